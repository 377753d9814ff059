"""Reads and guarded transitions of the task log.

Every change is one conditional UPDATE with its arithmetic done in SQL, so two workers racing
on one task can neither lose an update nor move a finished task back:
- nothing leaves a terminal status (success, failed);
- `attempts` is a fencing token: a delivery that claimed attempt N may mark the task
  retrying or failed only while attempt N is still the one processing, so a stale delivery
  cannot overwrite the state of a newer one, and one attempt's outcome is recorded once;
- success is accepted from any attempt while the task is unfinished (the write happened; the
  first finisher wins and later finishers are told they lost).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import rowcount, transaction
from services.core.tasklog.models import TERMINAL, TaskLog, TaskStatus, utcnow

_UNFINISHED = TaskLog.status.not_in([s.value for s in TERMINAL])


def _running(attempt: int) -> ColumnElement[bool]:
    # The outcome of an attempt belongs to that attempt while it runs, and is recorded once.
    return and_(TaskLog.status == TaskStatus.PROCESSING, TaskLog.attempts == attempt)


@dataclass(frozen=True)
class Claim:
    """A delivery's right to run attempt `attempt` of a task."""

    task_id: str
    task_name: str
    attempt: int
    retry_count: int
    payload: dict[str, Any]
    sealed_secrets: str | None
    deadline_at: datetime
    checkpoint: dict[str, Any] | None = None


class TaskLogRepository:
    """Task-log access; each method is its own short transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory, for readers that share this database."""
        return self._sessions

    def create(
        self,
        *,
        task_id: str,
        task_name: str,
        queue: str,
        payload: dict[str, Any],
        deadline_at: datetime,
        user_id: str | None = None,
        customer_id: str | None = None,
        idempotency_key: str | None = None,
        sealed_secrets: str | None = None,
        request_hash: str | None = None,
        retry_of: str | None = None,
        now: datetime | None = None,
    ) -> TaskLog:
        """Record an accepted task as pending (IntegrityError on a used key or retried task)."""
        at = now or utcnow()
        row = TaskLog(
            task_id=task_id,
            task_name=task_name,
            queue=queue,
            payload=payload,
            deadline_at=deadline_at,
            user_id=user_id,
            customer_id=customer_id,
            idempotency_key=idempotency_key,
            sealed_secrets=sealed_secrets,
            request_hash=request_hash,
            retry_of=retry_of,
            status=TaskStatus.PENDING,
            retry_count=0,
            attempts=0,
            created_at=at,
            updated_at=at,
        )
        with transaction(self._sessions) as session:
            session.add(row)
        return row

    def mark_published(self, task_id: str, *, now: datetime | None = None) -> None:
        """Note that the broker accepted the task's message."""
        with transaction(self._sessions) as session:
            session.execute(
                update(TaskLog)
                .where(TaskLog.task_id == task_id)
                .values(published_at=now or utcnow())
            )

    def claim(self, task_id: str, *, now: datetime | None = None) -> Claim | None:
        """Start a new attempt of an unfinished task; None if it is finished or unknown."""
        at = now or utcnow()
        stmt = (
            update(TaskLog)
            .where(TaskLog.task_id == task_id, _UNFINISHED)
            .values(
                status=TaskStatus.PROCESSING,
                attempts=TaskLog.attempts + 1,
                next_attempt_at=None,
                updated_at=at,
            )
            .returning(
                TaskLog.task_name,
                TaskLog.attempts,
                TaskLog.retry_count,
                TaskLog.payload,
                TaskLog.sealed_secrets,
                TaskLog.deadline_at,
                TaskLog.checkpoint,
            )
        )
        with transaction(self._sessions) as session:
            row = session.execute(stmt).one_or_none()
        if row is None:
            return None
        return Claim(
            task_id=task_id,
            task_name=row.task_name,
            attempt=row.attempts,
            retry_count=row.retry_count,
            payload=row.payload,
            sealed_secrets=row.sealed_secrets,
            deadline_at=row.deadline_at,
            checkpoint=row.checkpoint,
        )

    def save_progress(
        self,
        task_id: str,
        *,
        attempt: int,
        checkpoint: dict[str, Any] | None = None,
        done: int | None = None,
        total: int | None = None,
    ) -> bool:
        """Record what the running attempt has done so far; False if it is no longer current."""
        values: dict[str, Any] = {"updated_at": utcnow()}
        if checkpoint is not None:
            values["checkpoint"] = checkpoint
        if done is not None:
            values["progress_done"] = done
        if total is not None:
            values["progress_total"] = total
        stmt = update(TaskLog).where(TaskLog.task_id == task_id, _running(attempt)).values(**values)
        with transaction(self._sessions) as session:
            return rowcount(session.execute(stmt)) == 1

    def update_status(
        self,
        task_id: str,
        status: TaskStatus,
        *,
        result: Any = None,
        error: str | None = None,
        error_kind: str | None = None,
        failure_reason: str | None = None,
        attempt: int | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Move an unfinished task to `status`; False if the guard refused the change.

        With `attempt`, a non-success change applies only while that attempt is current.
        """
        at = now or utcnow()
        values: dict[str, Any] = {"status": status, "updated_at": at}
        if status in TERMINAL:
            values["finished_at"] = at
            values["next_attempt_at"] = None
        if status == TaskStatus.SUCCESS:
            values.update(result=result, error_kind=None, failure_reason=None)
        if error is not None:
            values.update(error_message=error, error_kind=error_kind)
        if failure_reason is not None:
            values["failure_reason"] = failure_reason
        stmt = update(TaskLog).where(TaskLog.task_id == task_id, _UNFINISHED)
        if attempt is not None and status != TaskStatus.SUCCESS:
            stmt = stmt.where(_running(attempt))
        with transaction(self._sessions) as session:
            return rowcount(session.execute(stmt.values(**values))) == 1

    def mark_retrying(
        self,
        task_id: str,
        *,
        attempt: int,
        error: str,
        error_kind: str,
        next_attempt_at: datetime,
        now: datetime | None = None,
    ) -> bool:
        """Record a failed attempt that will be retried; counts the retry in the same step."""
        stmt = (
            update(TaskLog)
            .where(TaskLog.task_id == task_id, _running(attempt))
            .values(
                status=TaskStatus.RETRYING,
                retry_count=TaskLog.retry_count + 1,
                error_message=error,
                error_kind=error_kind,
                next_attempt_at=next_attempt_at,
                updated_at=now or utcnow(),
            )
        )
        with transaction(self._sessions) as session:
            return rowcount(session.execute(stmt)) == 1

    def park(self, task_id: str, *, until: datetime, now: datetime | None = None) -> bool:
        """Put off a waiting task until `until` without counting an attempt or a retry.

        Only a task that is waiting (pending or retrying) and whose deadline lies beyond
        `until` is parked; otherwise the caller runs it now.
        """
        stmt = (
            update(TaskLog)
            .where(
                TaskLog.task_id == task_id,
                TaskLog.status.in_([TaskStatus.PENDING, TaskStatus.RETRYING]),
                TaskLog.deadline_at > until,
            )
            .values(next_attempt_at=until, updated_at=now or utcnow())
        )
        with transaction(self._sessions) as session:
            return rowcount(session.execute(stmt)) == 1

    def increment_retry(self, task_id: str) -> bool:
        """Count one more retry of an unfinished task."""
        stmt = (
            update(TaskLog)
            .where(TaskLog.task_id == task_id, _UNFINISHED)
            .values(retry_count=TaskLog.retry_count + 1, updated_at=utcnow())
        )
        with transaction(self._sessions) as session:
            return rowcount(session.execute(stmt)) == 1

    def get_by_task_id(self, task_id: str) -> TaskLog | None:
        """The row of a task, if any."""
        with self._sessions() as session:
            return session.scalars(select(TaskLog).where(TaskLog.task_id == task_id)).first()

    def find_by_idempotency_key(self, customer_id: str | None, key: str) -> TaskLog | None:
        """The task accepted under a customer's idempotency key, if any."""
        stmt = select(TaskLog).where(
            TaskLog.customer_id == customer_id, TaskLog.idempotency_key == key
        )
        with self._sessions() as session:
            return session.scalars(stmt).first()

    def release_idempotency_key(self, task_id: str) -> None:
        """Forget the idempotency key of a task (its retention has passed)."""
        with transaction(self._sessions) as session:
            session.execute(
                update(TaskLog).where(TaskLog.task_id == task_id).values(idempotency_key=None)
            )

    def get_retry_of(self, task_id: str) -> TaskLog | None:
        """The manual retry of a task, if it was retried."""
        with self._sessions() as session:
            return session.scalars(select(TaskLog).where(TaskLog.retry_of == task_id)).first()

    def get_failed_tasks(self, limit: int = 100) -> Sequence[TaskLog]:
        """Failed tasks, most recently updated first."""
        stmt = (
            select(TaskLog)
            .where(TaskLog.status == TaskStatus.FAILED)
            .order_by(TaskLog.updated_at.desc(), TaskLog.id.desc())
            .limit(limit)
        )
        with self._sessions() as session:
            return session.scalars(stmt).all()

    def get_user_tasks(self, user_id: str, limit: int = 50) -> Sequence[TaskLog]:
        """A user's tasks, newest first."""
        stmt = (
            select(TaskLog)
            .where(TaskLog.user_id == user_id)
            .order_by(TaskLog.created_at.desc(), TaskLog.id.desc())
            .limit(limit)
        )
        with self._sessions() as session:
            return session.scalars(stmt).all()

    def delete_finished_before(self, *, status: TaskStatus, before: datetime) -> int:
        """Drop finished rows of `status` that finished before `before`; how many went."""
        if status not in TERMINAL:
            raise ValueError("only finished tasks may be deleted")
        stmt = delete(TaskLog).where(TaskLog.status == status, TaskLog.finished_at < before)
        with transaction(self._sessions) as session:
            return rowcount(session.execute(stmt))
