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

from sqlalchemy import ColumnElement, Select, case, literal, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import rowcount, run_transaction, single_statement
from services.core.taskdefs import Downstream
from services.core.tasklog.clock import clock, db_now, when
from services.core.tasklog.models import IN_FLIGHT, TERMINAL, TaskLog, TaskStatus, UTCDateTime
from services.core.tasklog.repository import Refusal, claimable

ORDER = "order"
BACKOFF = "backoff"
RATE_LIMIT = "rate_limit"
__all__ = ["BACKOFF", "IN_FLIGHT", "ORDER", "RATE_LIMIT", "Candidate", "Released", "WaitLog"]


def breaker_reason(downstream: Downstream | str) -> str:
    """The wait reason of a task put off by a downstream's open breaker."""
    return f"breaker:{Downstream(downstream).value}"


BREAKER_REASONS = {d: breaker_reason(d) for d in Downstream}
# Released by time (next_attempt_at); breaker waits are released by the breaker's state.
TIMED_REASONS = (BACKOFF, RATE_LIMIT, ORDER, IN_FLIGHT)
# Released when due and not before, whatever the deadline: an ordering wait would run a
# write before an earlier one; an in-flight wait before an earlier attempt's requests settled.
NEVER_EARLY = (ORDER, IN_FLIGHT)


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


def _at(now: datetime | None) -> ColumnElement[datetime]:
    """`now` if given (a test's moment), else the database's clock."""
    return literal(now, UTCDateTime()) if now is not None else db_now()


class WaitLog:
    """Holds and releases of waiting tasks."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def hold(
        self,
        task_id: str,
        *,
        reason: str,
        until: datetime | None = None,
        now: datetime | None = None,
        delay_s: float = 0.0,
        in_log: bool = True,
        respect_deadline: bool = True,
        waiting_for: str | None = None,
    ) -> Refusal | None:
        """Put a task off until `until` (or `delay_s` from now by the database's clock);
        None when done, else why the log refused.

        Only a task no live attempt runs is put off. With `respect_deadline`, never past its
        deadline (Refusal.DEADLINE: run it now). With `waiting_for`, only while that task is
        unfinished (else Refusal.BLOCKER_DONE): the blocker's row is locked meanwhile, so
        its completion, which wakes its waiters, cannot slip between the check and the hold.
        """
        at = clock("at")
        due = when("until", delay="delay_s")
        conditions: list[ColumnElement[bool]] = [TaskLog.task_id == task_id, claimable(at)]
        if respect_deadline:
            conditions.append(TaskLog.deadline_at > due)
        values: dict[str, Any] = {
            "held": in_log,
            "wait_reason": reason,
            "waiting_for": waiting_for,
            "next_attempt_at": due,
            "updated_at": at,
            # A processing row here lost its attempt (its lease ran out): it waits to retry.
            "status": case(
                (TaskLog.status == TaskStatus.PROCESSING, TaskStatus.RETRYING),
                else_=TaskLog.status,
            ),
            "lease_until": None,
            "lease_owner": None,
        }
        params = {"at": now, "until": until, "delay_s": delay_s}

        def put_off(session: Session) -> Refusal | bool | None:
            if waiting_for is not None:
                blocker = session.scalar(
                    select(TaskLog.status)
                    .where(TaskLog.task_id == waiting_for)
                    .with_for_update(read=True)
                )
                if blocker is None or blocker in TERMINAL:
                    return Refusal.BLOCKER_DONE
            done = session.execute(update(TaskLog).where(*conditions).values(**values), params)
            return rowcount(done) == 1

        outcome = run_transaction(self._sessions, put_off)
        if outcome is True:
            return None
        if isinstance(outcome, Refusal):
            return outcome
        return self._why_not(task_id, now)

    def _why_not(self, task_id: str, now: datetime | None) -> Refusal:
        at = clock("at")
        stmt = select(
            TaskLog.status,
            (TaskLog.lease_until > at).label("leased"),
            ((TaskLog.wait_reason == IN_FLIGHT) & (TaskLog.next_attempt_at > at)).label("early"),
        ).where(TaskLog.task_id == task_id)
        with single_statement(self._sessions) as session:
            row = session.execute(stmt, {"at": now}).one_or_none()
        if row is None:
            return Refusal.MISSING
        if row.status in TERMINAL:
            return Refusal.FINISHED
        if row.early:
            return Refusal.NOT_DUE
        busy = row.status == TaskStatus.PROCESSING and bool(row.leased)
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

    def due(self, queue: str, reason: str, now: datetime | None, limit: int) -> list[Candidate]:
        """Held tasks waiting for `reason` whose time has come (by the database's clock
        unless `now` is given)."""
        return self._pairs(self.due_statement(queue, reason, now, limit))

    @staticmethod
    def due_statement(
        queue: str, reason: str, now: datetime | None, limit: int
    ) -> Select[int, str, str]:
        """The query of `due` (its plan must use ix_task_log_held_due: it runs every pass)."""
        return (
            select(TaskLog.seq, TaskLog.task_id, TaskLog.task_name)
            .where(
                TaskLog.held,
                TaskLog.queue == queue,
                TaskLog.wait_reason == reason,
                TaskLog.next_attempt_at <= _at(now),
            )
            .order_by(TaskLog.next_attempt_at)
            .limit(limit)
        )

    def near_deadline(
        self, queue: str, within_s: float, limit: int, now: datetime | None = None
    ) -> list[Candidate]:
        """Held tasks whose deadline comes within `within_s` (by the database's clock).

        They get their last attempt at their deadline whatever they wait for (an ordering
        or in-flight wait excepted), so they end failed and alert rather than wait past it.
        """
        stmt = (
            select(TaskLog.seq, TaskLog.task_id, TaskLog.task_name)
            .where(
                TaskLog.held,
                TaskLog.queue == queue,
                TaskLog.deadline_at <= when("until", delay="within_s"),
                *(TaskLog.wait_reason != r for r in NEVER_EARLY),
            )
            .order_by(TaskLog.deadline_at)
            .limit(limit)
        )
        return self._pairs(stmt, {"at": now, "until": None, "within_s": within_s})

    def _pairs(self, stmt: Any, params: dict[str, Any] | None = None) -> list[Candidate]:
        with single_statement(self._sessions) as session:
            rows = session.execute(stmt, params or {})
            return [Candidate(int(r.seq), r.task_id, r.task_name) for r in rows]

    def release(self, task_ids: Sequence[str], now: datetime | None = None) -> list[Released]:
        """Take held tasks out of the log for publishing (each only once; an in-flight wait
        only once it is due)."""
        if not task_ids:
            return []
        at = _at(now)
        stmt = (
            update(TaskLog)
            .where(
                TaskLog.task_id.in_(list(task_ids)),
                TaskLog.held,
                or_(TaskLog.wait_reason != IN_FLIGHT, TaskLog.next_attempt_at <= at),
            )
            .values(
                held=False,
                wait_reason=None,
                waiting_for=None,
                next_attempt_at=at,
                published_at=at,
                updated_at=at,
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
