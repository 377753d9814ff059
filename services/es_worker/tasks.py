"""The 15 Elasticsearch tasks, declared from the catalog table (kinds x operations)."""

from __future__ import annotations

from typing import Any

from services.core.search.apply import execute
from services.core.search.catalog import KINDS, Kind, Operation
from services.core.search.runtime import worker_runtime
from services.core.search.writer import BulkProgress
from services.core.tracking import Body, TaskContext
from services.core.tracking.task import TrackedTask, tracked_task


def _body(kind: Kind, op: Operation) -> Body:
    def body(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
        runtime = worker_runtime()
        progress = BulkProgress.from_checkpoint(
            ctx.checkpoint, lambda checkpoint: ctx.save_progress(checkpoint=checkpoint)
        )
        return runtime.run(
            execute(
                runtime.writer,
                kind,
                op,
                payload,
                seq=ctx.seq,
                api_key=ctx.secrets.get("api_key"),
                progress=progress,
                fence=ctx.may_have_written,
            )
        )

    body.__doc__ = f"{op.value.replace('_', ' ')} of {kind.plural} in Elasticsearch"
    return body


TASKS: dict[str, TrackedTask] = {
    kind.task_name(op): tracked_task(kind.spec(op))(_body(kind, op))
    for kind in KINDS.values()
    for op in Operation
}
