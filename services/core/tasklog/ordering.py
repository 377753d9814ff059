"""Per-entity ordering in the task log: which earlier write a task waits for, and which later
write a redrive would undo.

Acceptance order is `seq`. Two writes of one scope meet when their keys are equal or either
key is NULL (it covers the scope). An ordered write is claimed only when no earlier write it
meets is unfinished (the claim statement checks it, `statements.earlier_unfinished`); this
module names the write it waits for. A redrive of a write without versions is a new write,
refused once a write it meets, accepted after the original, has taken or may take effect.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, and_, func, not_, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from services.core.db import single_statement
from services.core.retry import GiveUpReason
from services.core.tasklog.models import TERMINAL, TaskLog, TaskStatus


def _meets(other: type[TaskLog], me: type[TaskLog]) -> ColumnElement[bool]:
    return (other.order_scope == me.order_scope) & or_(
        other.order_key.is_(None), me.order_key.is_(None), other.order_key == me.order_key
    )


def _without_effect(row: type[TaskLog]) -> ColumnElement[bool]:
    """A write known to have changed nothing downstream: failed without ever running, or
    refused for good (a 4xx) before any of its parts was done."""
    never_ran = row.failure_reason == GiveUpReason.UNKNOWN_MESSAGE.value
    refused = and_(
        row.failure_reason == GiveUpReason.PERMANENT_ERROR.value,
        func.coalesce(row.progress_done, 0) == 0,
    )
    return and_(row.status == TaskStatus.FAILED, or_(never_ran, refused))


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
                *(other.status != s.value for s in sorted(TERMINAL)),
            )
            .order_by(other.seq.desc())
            .limit(1)
        )
        with single_statement(self._sessions) as session:
            return session.scalar(stmt)

    def later_write(self, task_id: str, changing: Iterable[str]) -> str | None:
        """A write that meets `task_id`, was accepted after it (its original place is later)
        and has taken or may still take effect, if any: a redrive of `task_id` would undo it.
        """
        names = sorted(changing)
        if not names:
            return None
        me, other = aliased(TaskLog), aliased(TaskLog)
        my_place = func.coalesce(me.origin_seq, me.seq)
        stmt = (
            select(other.task_id)
            .join(me, _meets(other, me))
            .where(
                me.task_id == task_id,
                me.order_scope.is_not(None),
                other.order_scope.is_not(None),
                # A redrive runs later than its original but stands in its place.
                other.seq > my_place,
                func.coalesce(other.origin_seq, other.seq) > my_place,
                other.task_name.in_(names),
                not_(_without_effect(other)),
            )
            .order_by(other.seq.desc())
            .limit(1)
        )
        with single_statement(self._sessions) as session:
            return session.scalar(stmt)
