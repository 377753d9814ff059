"""Manual retries of failed tasks: one by id, or many by filter with a dry run first.

A redrive never undoes a later write:
- a catalog write (its downstream orders writes by version) keeps its place in acceptance
  order, so the newest accepted write of an item still wins, whatever runs when;
- a ChatbotMobile write (no versions) is refused once a write of the same entity accepted
  after it has taken or may still take effect (LaterWrite, a 409 at the API); otherwise it
  becomes a new write, ordered after everything accepted so far, with an Idempotency-Key of
  its own, tried after the keys of the write's earlier incarnations (an earlier attempt that
  landed is answered from ChatbotMobile's memory, not applied twice; an answer it remembered
  under the old key, such as a 404 while the FAQ was missing, is not the redrive's).
Retries in acceptance order (`redrive`): the earlier of two writes of one entity first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.core.enqueue import Enqueued, Enqueuer, RetryOf
from services.core.secrecy import Sealer
from services.core.taskdefs import changing_task_names, spec_for
from services.core.tasklog.models import TaskLog, TaskStatus
from services.core.tasklog.ordering import OrderingQueries
from services.core.tasklog.queries import TaskFilter, TaskQueries


class NotFailed(ValueError):
    """Only failed tasks can be retried."""


class AlreadyRetried(ValueError):
    """A manual retry of this task exists already."""


class LaterWrite(ValueError):
    """A write of the same entity accepted later has taken or may take effect: a redrive
    would undo it."""


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


def _retry_of(enqueuer: Enqueuer, row: TaskLog) -> RetryOf:
    spec = spec_for(row.task_name)
    checkpoint = resumable(row.checkpoint)
    if spec.versioned or spec.ordering is None:
        # The same write again, at its place: its version keeps it from undoing later ones.
        return RetryOf(row.task_id, row.seq, row.idempotency_origin, checkpoint)
    if spec.ordering.changes:
        later = OrderingQueries(enqueuer.sessions).later_write(row.task_id, changing_task_names())
        if later is not None:
            raise LaterWrite(
                f"task {row.task_id} is not retried: task {later}, a later write of the same "
                "entity, has taken or may still take effect, and the retry would undo it; "
                "send the write again as a new request if it is still wanted"
            )
    return RetryOf(
        row.task_id,
        None,
        row.idempotency_origin,
        checkpoint,
        origin_seq=row.place,
        prior_keys=list(row.idempotency_keys),
    )


def retry_failed(enqueuer: Enqueuer, sealer: Sealer, row: TaskLog) -> Enqueued:
    """Queue a new task with the failed task's payload and secrets, linked to it (see the
    module docstring for where it stands in acceptance order), resuming from its checkpoint.
    """
    if row.status != TaskStatus.FAILED:
        raise NotFailed(f"task {row.task_id} is {row.status}, not failed")
    retry = _retry_of(enqueuer, row)
    try:
        return enqueuer.enqueue(
            row.task_name,
            row.payload,
            user_id=row.user_id,
            customer_id=row.customer_id,
            secrets=sealer.unseal(row.sealed_secrets),
            retry_of=retry,
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
    # Not retried: a later write of the same entity would be undone (LaterWrite).
    refused: list[dict[str, str]] = field(default_factory=list)


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
    # Oldest accepted first: of two failed writes of one entity, the earlier is redriven (and
    # runs) first, as they were accepted.
    for row in sorted(rows, key=lambda r: r.place):
        try:
            accepted = retry_failed(enqueuer, sealer, row)
        except AlreadyRetried:
            continue
        except LaterWrite as exc:
            report.refused.append({"task_id": row.task_id, "reason": str(exc)})
            continue
        report.retried.append({"task_id": row.task_id, "retried_as": accepted.task_id})
    return report
