"""Waiting in the task log: putting a task off, and releasing it when it is due.

A task that must wait long (an open breaker, a long backoff, an earlier write of the same
entity, a rate-limit window) leaves no broker message: its row is `held`, says why
(`wait_reason`, `waiting_for`) and from when it is due (`next_attempt_at`). Celery would keep
a countdown message in a worker's memory and in Redis' unacked hash until it is due, so an
outage backlog parked that way grows the workers and cycles through them; the log is durable
storage we have anyway. The releaser (`tasklog.releaser`) publishes held tasks when due.
Short waits keep using countdown messages, recorded here with `held` false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import single_statement, transaction
from services.core.taskdefs import Downstream
from services.core.tasklog.models import TERMINAL, TaskLog, TaskStatus
from services.core.tasklog.repository import Refusal, claimable

ORDER = "order"
BACKOFF = "backoff"
RATE_LIMIT = "rate_limit"


def breaker_reason(downstream: Downstream | str) -> str:
    """The wait reason of a task put off by a downstream's open breaker."""
    return f"breaker:{Downstream(downstream).value}"


BREAKER_REASONS = {d: breaker_reason(d) for d in Downstream}
# Released by time (next_attempt_at); breaker waits are released by the breaker's state.
TIMED_REASONS = (BACKOFF, RATE_LIMIT, ORDER)


@dataclass(frozen=True)
class Candidate:
    """A held task that may be released."""

    seq: int
    task_id: str
    task_name: str


@dataclass(frozen=True)
class Released:
    """A held task the releaser took out of the log, to publish."""

    task_id: str
    task_name: str
    queue: str
    payload: dict[str, Any]
    seq: int


class WaitLog:
    """Holds and releases of waiting tasks."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def hold(
        self,
        task_id: str,
        *,
        reason: str,
        until: datetime,
        now: datetime,
        in_log: bool = True,
        respect_deadline: bool = True,
        waiting_for: str | None = None,
    ) -> Refusal | None:
        """Put a task off until `until`; None when done, else why the log refused.

        Only a task no live attempt runs is put off. With `respect_deadline`, never past its
        deadline (Refusal.DEADLINE: run it now). With `waiting_for`, only while that task is
        unfinished (else Refusal.BLOCKER_DONE): the blocker's row is locked meanwhile, so
        its completion, which wakes its waiters, cannot slip between the check and the hold.
        """
        conditions = [TaskLog.task_id == task_id, claimable(now)]
        if respect_deadline:
            conditions.append(TaskLog.deadline_at > until)
        values: dict[str, Any] = {
            "held": in_log,
            "wait_reason": reason,
            "waiting_for": waiting_for,
            "next_attempt_at": until,
            "updated_at": now,
            # A processing row here lost its attempt (its lease ran out): it waits to retry.
            "status": case(
                (TaskLog.status == TaskStatus.PROCESSING, TaskStatus.RETRYING),
                else_=TaskLog.status,
            ),
            "lease_until": None,
            "lease_owner": None,
        }
        with transaction(self._sessions) as session:
            if waiting_for is not None:
                blocker = session.scalar(
                    select(TaskLog.status)
                    .where(TaskLog.task_id == waiting_for)
                    .with_for_update(read=True)
                )
                if blocker is None or blocker in TERMINAL:
                    return Refusal.BLOCKER_DONE
            done = session.execute(update(TaskLog).where(*conditions).values(**values))
            if done.rowcount == 1:  # type: ignore[attr-defined]
                return None
            row = session.execute(
                select(TaskLog.status, TaskLog.lease_until).where(TaskLog.task_id == task_id)
            ).one_or_none()
        if row is None:
            return Refusal.MISSING
        if row.status in TERMINAL:
            return Refusal.FINISHED
        busy = row.status == TaskStatus.PROCESSING and (
            row.lease_until is not None and row.lease_until > now
        )
        return Refusal.BUSY if busy else Refusal.DEADLINE

    def by_seq(self, queue: str, reason: str, limit: int) -> list[Candidate]:
        """Held tasks waiting for `reason`, oldest accepted first."""
        stmt = (
            select(TaskLog.seq, TaskLog.task_id, TaskLog.task_name)
            .where(TaskLog.held, TaskLog.queue == queue, TaskLog.wait_reason == reason)
            .order_by(TaskLog.seq)
            .limit(limit)
        )
        return self._pairs(stmt)

    def due(self, queue: str, reason: str, now: datetime, limit: int) -> list[Candidate]:
        """Held tasks waiting for `reason` whose time has come."""
        return self._pairs(self.due_statement(queue, reason, now, limit))

    @staticmethod
    def due_statement(queue: str, reason: str, now: datetime, limit: int) -> Select[int, str, str]:
        """The query of `due` (its plan must use ix_task_log_held_due: it runs every pass)."""
        return (
            select(TaskLog.seq, TaskLog.task_id, TaskLog.task_name)
            .where(
                TaskLog.held,
                TaskLog.queue == queue,
                TaskLog.wait_reason == reason,
                TaskLog.next_attempt_at <= now,
            )
            .order_by(TaskLog.next_attempt_at)
            .limit(limit)
        )

    def near_deadline(self, queue: str, before: datetime, limit: int) -> list[Candidate]:
        """Held tasks whose deadline comes before `before`.

        They get their last attempt at their deadline whatever they wait for (an ordering
        wait excepted), so they end failed and alert rather than wait past it.
        """
        stmt = (
            select(TaskLog.seq, TaskLog.task_id, TaskLog.task_name)
            .where(
                TaskLog.held,
                TaskLog.queue == queue,
                TaskLog.deadline_at <= before,
                TaskLog.wait_reason != ORDER,
            )
            .order_by(TaskLog.deadline_at)
            .limit(limit)
        )
        return self._pairs(stmt)

    def _pairs(self, stmt: Any) -> list[Candidate]:
        with single_statement(self._sessions) as session:
            return [Candidate(int(r.seq), r.task_id, r.task_name) for r in session.execute(stmt)]

    def release(self, task_ids: Sequence[str], now: datetime) -> list[Released]:
        """Take held tasks out of the log for publishing (each only once)."""
        if not task_ids:
            return []
        stmt = (
            update(TaskLog)
            .where(TaskLog.task_id.in_(list(task_ids)), TaskLog.held)
            .values(
                held=False,
                wait_reason=None,
                waiting_for=None,
                next_attempt_at=now,
                published_at=now,
                updated_at=now,
            )
            .returning(
                TaskLog.task_id, TaskLog.task_name, TaskLog.queue, TaskLog.payload, TaskLog.seq
            )
        )
        with single_statement(self._sessions) as session:
            rows = session.execute(stmt).all()
        return sorted(
            (Released(r.task_id, r.task_name, r.queue, r.payload, int(r.seq)) for r in rows),
            key=lambda r: r.seq,
        )
