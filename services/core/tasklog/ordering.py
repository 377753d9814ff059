"""Per-entity ordering in the task log: which earlier write a task must wait for, and which
later write has made it obsolete.

Acceptance order is `seq`. Two writes of one scope meet when their keys are equal or either
key is NULL (it covers the scope). A write runs only when no earlier write it meets is
unfinished; a manual retry (which keeps its original's `seq`) of a write that a later,
replacing write already settled is obsolete.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from services.core.db import single_statement
from services.core.tasklog.models import TERMINAL, TaskLog, TaskStatus


def _meets(other: type[TaskLog], me: type[TaskLog]) -> ColumnElement[bool]:
    return (other.order_scope == me.order_scope) & or_(
        other.order_key.is_(None), me.order_key.is_(None), other.order_key == me.order_key
    )


class OrderingQueries:
    """Ordering decisions read from the task log."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def blocker(self, task_id: str) -> str | None:
        """The latest earlier unfinished write that `task_id` meets, if any."""
        me, other = aliased(TaskLog), aliased(TaskLog)
        stmt = (
            select(other.task_id)
            .join(me, _meets(other, me))
            .where(
                me.task_id == task_id,
                me.order_scope.is_not(None),
                other.order_scope.is_not(None),
                other.seq < me.seq,
                other.status.not_in([s.value for s in TERMINAL]),
            )
            .order_by(other.seq.desc())
            .limit(1)
        )
        with single_statement(self._sessions) as session:
            return session.scalar(stmt)

    def superseded_by(self, task_id: str, replacing: Iterable[str]) -> str | None:
        """A later write that succeeded, meets `task_id` and replaces what it wrote, if any."""
        names = list(replacing)
        if not names:
            return None
        me, other = aliased(TaskLog), aliased(TaskLog)
        stmt = (
            select(other.task_id)
            .join(me, _meets(other, me))
            .where(
                me.task_id == task_id,
                me.order_scope.is_not(None),
                other.order_scope.is_not(None),
                other.seq > me.seq,
                other.status == TaskStatus.SUCCESS,
                other.task_name.in_(names),
                # A write that covers the scope is made obsolete only by one that does too.
                or_(me.order_key.is_not(None), other.order_key.is_(None)),
            )
            .order_by(other.seq.desc())
            .limit(1)
        )
        with single_statement(self._sessions) as session:
            return session.scalar(stmt)
