"""Manual retries of failed tasks: one by id, or many by filter with a dry run first."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError

from services.core.enqueue import Enqueued, Enqueuer
from services.core.secrecy import Sealer
from services.core.tasklog.models import TaskLog, TaskStatus
from services.core.tasklog.queries import TaskFilter, TaskQueries


class NotFailed(ValueError):
    """Only failed tasks can be retried."""


class AlreadyRetried(ValueError):
    """A manual retry of this task exists already."""


def retry_failed(enqueuer: Enqueuer, sealer: Sealer, row: TaskLog) -> Enqueued:
    """Queue a new task with the failed task's payload and secrets, linked to it."""
    if row.status != TaskStatus.FAILED:
        raise NotFailed(f"task {row.task_id} is {row.status}, not failed")
    try:
        return enqueuer.enqueue(
            row.task_name,
            row.payload,
            user_id=row.user_id,
            customer_id=row.customer_id,
            secrets=sealer.unseal(row.sealed_secrets),
            retry_of=row.task_id,
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
