"""Manual retries of failed tasks: one by id, or many by filter with a dry run first."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.core.enqueue import Enqueued, Enqueuer, RetryOf
from services.core.secrecy import Sealer
from services.core.tasklog.models import TaskLog, TaskStatus
from services.core.tasklog.queries import TaskFilter, TaskQueries


class NotFailed(ValueError):
    """Only failed tasks can be retried."""


class AlreadyRetried(ValueError):
    """A manual retry of this task exists already."""


def resumable(checkpoint: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a retry keeps of a failed task's checkpoint: the work done, not the refusals.

    Bulk writes record per-item errors under "errors"; a manual retry exists to try those
    items again, so they are dropped. Everything else (items done, import chunks sent) is
    kept, so the retry does not repeat it.
    """
    if not checkpoint:
        return None
    kept = {k: v for k, v in checkpoint.items() if k != "errors"}
    return kept or None


def retry_failed(enqueuer: Enqueuer, sealer: Sealer, row: TaskLog) -> Enqueued:
    """Queue a new task with the failed task's payload and secrets, linked to it.

    The retry keeps the failed write's place in acceptance order (`seq`) and identity
    (`origin_task_id`, which downstream idempotency keys derive from), and resumes from its
    checkpoint: what it sends is the same request, not a new one.
    """
    if row.status != TaskStatus.FAILED:
        raise NotFailed(f"task {row.task_id} is {row.status}, not failed")
    try:
        return enqueuer.enqueue(
            row.task_name,
            row.payload,
            user_id=row.user_id,
            customer_id=row.customer_id,
            secrets=sealer.unseal(row.sealed_secrets),
            retry_of=RetryOf(
                task_id=row.task_id,
                seq=row.seq,
                origin_task_id=row.idempotency_origin,
                checkpoint=resumable(row.checkpoint),
            ),
        )
    except IntegrityError as exc:
        # The unique index on retry_of: someone retried it a moment ago.
        raise AlreadyRetried(f"task {row.task_id} was already retried") from exc


@dataclass
class RedriveReport:
    """What a redrive found and did."""

    dry_run: bool
    matched: int
    retried: list[dict[str, str]] = field(default_factory=list)


def redrive(
    enqueuer: Enqueuer,
    sealer: Sealer,
    queries: TaskQueries,
    f: TaskFilter,
    *,
    limit: int,
    dry_run: bool,
) -> RedriveReport:
    """Retry up to `limit` failed, not yet retried tasks matching `f` (or only count them)."""
    failed = TaskFilter(**{**f.__dict__, "status": TaskStatus.FAILED, "not_retried": True})
    report = RedriveReport(dry_run=dry_run, matched=queries.count(failed))
    if dry_run:
        return report
    rows, _ = queries.page(failed, limit=limit)
    for row in rows:
        try:
            accepted = retry_failed(enqueuer, sealer, row)
        except AlreadyRetried:
            continue
        report.retried.append({"task_id": row.task_id, "retried_as": accepted.task_id})
    return report
