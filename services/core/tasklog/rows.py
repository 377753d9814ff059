"""Reads of single rows and the task log's housekeeping (retention, idempotency keys)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import rowcount, single_statement, transaction
from services.core.tasklog.clock import db_now
from services.core.tasklog.models import TERMINAL, TaskLog, TaskStatus
from services.core.tasklog.statements import UNFINISHED


class TaskRows:
    """Row reads and upkeep; each method is its own short transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory, for readers that share this database."""
        return self._sessions

    def get_by_task_id(self, task_id: str) -> TaskLog | None:
        """The row of a task, if any."""
        with single_statement(self._sessions) as session:
            return session.scalars(select(TaskLog).where(TaskLog.task_id == task_id)).first()

    def find_by_idempotency_key(self, customer_id: str | None, key: str) -> TaskLog | None:
        """The task accepted under a customer's idempotency key, if any."""
        with self._sessions() as session:
            return idempotency_holder(session, customer_id, key)

    def release_idempotency_key(self, task_id: str) -> None:
        """Forget the idempotency key of a task (its retention has passed)."""
        with transaction(self._sessions) as session:
            forget_idempotency_key(session, task_id)

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

    def oldest_open_seq(self, queue: str) -> int | None:
        """The lowest `seq` of a task of `queue` that may still run: unfinished, or failed
        (a manual retry of a catalog write keeps its number)."""
        stmt = select(func.min(TaskLog.seq)).where(
            TaskLog.queue == queue, TaskLog.status != TaskStatus.SUCCESS
        )
        with self._sessions() as session:
            return session.scalar(stmt)

    def mark_unpublished(self, task_id: str) -> None:
        """Note that the task's message did not reach the broker after all."""
        with transaction(self._sessions) as session:
            session.execute(
                update(TaskLog).where(TaskLog.task_id == task_id).values(published_at=None)
            )

    def increment_retry(self, task_id: str) -> bool:
        """Count one more retry of an unfinished task."""
        stmt = (
            update(TaskLog)
            .where(TaskLog.task_id == task_id, UNFINISHED)
            .values(retry_count=TaskLog.retry_count + 1, updated_at=db_now())
        )
        with transaction(self._sessions) as session:
            return rowcount(session.execute(stmt)) == 1


def idempotency_holder(session: Session, customer_id: str | None, key: str) -> TaskLog | None:
    """The task accepted under a customer's idempotency key, as `session` sees it."""
    stmt = select(TaskLog).where(TaskLog.customer_id == customer_id, TaskLog.idempotency_key == key)
    return session.scalars(stmt).first()


def forget_idempotency_key(session: Session, task_id: str) -> None:
    """Release a task's idempotency key (its retention has passed), in `session`."""
    session.execute(update(TaskLog).where(TaskLog.task_id == task_id).values(idempotency_key=None))
