"""Fair share in the task log: whose writes wait for their turn, and giving turns.

A write over its customer's bound waits in the log (`held`, `wait_reason` `fair_share`; the
decision is made by the acceptance INSERT, `tasklog.admission`). Turns are given two ways:
- a worker that finishes a task hands its place to its customer's next waiting write
  (`hand_off`), so an import keeps its bound of work queued without waiting for a release
  pass;
- the releaser gives the places that came free otherwise (a task held for a long wait, an
  ordering wait, a raised bound) in weighted round robin across customers (`tracking.fairshare`).

Every read here stays on the partial indexes of migration 0009: the customers with waiting
writes are found by skipping from one customer to the next in the index (a few probes per
customer, however many writes wait), and a customer's outstanding work is counted on the
index of unfinished rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BindParameter, Integer, Table, bindparam, case, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import DriverStatement, single_statement
from services.core.taskdefs import Queue
from services.core.tasklog.admission import counted_rows
from services.core.tasklog.clock import clock
from services.core.tasklog.models import (
    FAIR_COUNTED_SQL,
    FAIR_WAITING_SQL,
    TERMINAL,
    TaskLog,
)
from services.core.tasklog.waits import Candidate, Released

_TABLE = cast(Table, TaskLog.__table__)
# The customers past the top N, together. Not a customer id (CUSTOMER_ID_PATTERN refuses the
# parenthesis), so it never collides with one.
OTHER = "(other)"

# The customers with writes waiting on a queue, each with its oldest waiting write: a loose
# index scan (PostgreSQL 16 has no skip scan; SQLite runs it too).
_WAITING_CUSTOMERS = text(
    f"""
    WITH RECURSIVE w(customer_id) AS (
        SELECT min(customer_id) FROM task_log WHERE {FAIR_WAITING_SQL} AND queue = :queue
        UNION ALL
        SELECT (
            SELECT min(customer_id) FROM task_log
            WHERE {FAIR_WAITING_SQL} AND queue = :queue AND customer_id > w.customer_id
        ) FROM w WHERE w.customer_id IS NOT NULL
    )
    SELECT customer_id, (
        SELECT min(seq) FROM task_log
        WHERE {FAIR_WAITING_SQL} AND queue = :queue AND customer_id = w.customer_id
    ) AS oldest
    FROM w WHERE customer_id IS NOT NULL
    """
)

# A finished task's customer gets its next waiting write queued, if the customer is under
# its bound. The row is locked (SKIP LOCKED: two finishing tasks hand on two different
# writes) and still waiting when updated (a release pass may have taken it meanwhile).
# The database's clock unless a time is given (tasklog.clock).
_AT = clock("at")
_CUSTOMER: BindParameter[str] = bindparam("fair_customer", type_=_TABLE.c.customer_id.type)
_QUEUE: BindParameter[str] = bindparam("fair_queue", type_=_TABLE.c.queue.type)
_BOUND = bindparam("bound", type_=Integer())
_NEXT = (
    select(_TABLE.c.id)
    .where(text(FAIR_WAITING_SQL), _TABLE.c.queue == _QUEUE, _TABLE.c.customer_id == _CUSTOMER)
    .order_by(_TABLE.c.seq)
    .limit(1)
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
_BUSY = select(func.count()).select_from(counted_rows(_CUSTOMER, _QUEUE, _BOUND)).scalar_subquery()
HAND_OFF = DriverStatement(
    update(_TABLE)
    .where(_TABLE.c.id == _NEXT, text(FAIR_WAITING_SQL), _BUSY < _BOUND)
    .values(
        held=False,
        wait_reason=None,
        waiting_for=None,
        next_attempt_at=_AT,
        published_at=_AT,
        updated_at=_AT,
    )
    .returning(_TABLE.c.task_id, _TABLE.c.task_name, _TABLE.c.queue, _TABLE.c.payload, _TABLE.c.seq)
)


@dataclass(frozen=True)
class CustomerLoad:
    """A customer's unfinished work on a queue: outstanding, and waiting for its turn."""

    customer: str  # a customer id, or `other` for the customers past the top N together
    outstanding: int
    waiting: int


class FairShareLog:
    """Reads and turns of fair share in the task log."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def waiting_customers(self, queue: Queue | str) -> list[tuple[str, int]]:
        """Customers with writes waiting on `queue`, longest waiting first: (customer, seq of
        its oldest waiting write)."""
        with single_statement(self._sessions) as session:
            rows = session.execute(_WAITING_CUSTOMERS, {"queue": str(queue)}).all()
        return sorted(((str(c), int(oldest)) for c, oldest in rows), key=lambda r: r[1])

    def counted(self, queue: Queue | str, customers: Sequence[str]) -> dict[str, int]:
        """Outstanding tasks of each customer on `queue` (what its bound counts)."""
        if not customers:
            return {}
        stmt = (
            select(TaskLog.customer_id, func.count())
            .where(
                text(FAIR_COUNTED_SQL),
                TaskLog.queue == str(queue),
                TaskLog.customer_id.in_(list(customers)),
            )
            .group_by(TaskLog.customer_id)
        )
        with single_statement(self._sessions) as session:
            return {str(c): int(n) for c, n in session.execute(stmt)}

    def first_waiting(self, queue: Queue | str, customer: str, limit: int) -> list[Candidate]:
        """The customer's `limit` oldest waiting writes on `queue`."""
        stmt = (
            select(TaskLog.seq, TaskLog.task_id, TaskLog.task_name)
            .where(
                text(FAIR_WAITING_SQL),
                TaskLog.queue == str(queue),
                TaskLog.customer_id == customer,
            )
            .order_by(TaskLog.seq)
            .limit(limit)
        )
        with single_statement(self._sessions) as session:
            return [Candidate(int(r.seq), r.task_id, r.task_name) for r in session.execute(stmt)]

    def hand_off(
        self, queue: Queue | str, customer: str, bound: int, now: datetime | None = None
    ) -> Released | None:
        """Queue the customer's next waiting write if it is under `bound`; it, to publish."""
        params = {"fair_queue": str(queue), "fair_customer": customer, "bound": bound, "at": now}
        row = HAND_OFF.run(self._sessions, params).one_or_none()
        if row is None:
            return None
        return Released(row.task_id, row.task_name, row.queue, row.payload, int(row.seq))

    def loads(self, top: int) -> dict[str, list[CustomerLoad]]:
        """Per queue, the `top` customers with the most unfinished work, then `other` (always
        there, 0 when nobody else has any): outstanding, and waiting for a turn."""
        waiting = case((text(FAIR_WAITING_SQL), 1), else_=0)
        stmt = (
            select(TaskLog.queue, TaskLog.customer_id, func.count(), func.sum(waiting))
            .where(TaskLog.status.not_in([s.value for s in TERMINAL]))
            .where(TaskLog.customer_id.is_not(None))
            .group_by(TaskLog.queue, TaskLog.customer_id)
        )
        with single_statement(self._sessions) as session:
            rows = session.execute(stmt).all()
        per_queue: dict[str, list[CustomerLoad]] = {q.value: [] for q in Queue}
        for queue, customer, unfinished, held in rows:
            load = CustomerLoad(str(customer), int(unfinished) - int(held), int(held))
            per_queue.setdefault(str(queue), []).append(load)
        return {queue: _top(loads, top) for queue, loads in per_queue.items()}


def _top(loads: list[CustomerLoad], top: int) -> list[CustomerLoad]:
    ranked = sorted(loads, key=lambda c: (-(c.outstanding + c.waiting), c.customer))
    rest = ranked[top:]
    other = CustomerLoad(OTHER, sum(c.outstanding for c in rest), sum(c.waiting for c in rest))
    return [*ranked[:top], other]


def as_dict(loads: list[CustomerLoad]) -> list[dict[str, Any]]:
    """Loads as JSON-ready data."""
    return [
        {"customer": c.customer, "outstanding": c.outstanding, "waiting": c.waiting} for c in loads
    ]
