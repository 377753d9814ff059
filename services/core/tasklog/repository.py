"""Reads and guarded transitions of the task log.

Every change is one conditional UPDATE with its arithmetic done in SQL, so two workers racing
on one task can neither lose an update nor move a finished task back:
- nothing leaves a terminal status (success, failed);
- one live attempt per task: a claim takes a lease (the hard time limit plus a margin), and
  no other delivery may claim the task while the lease lasts;
- ordering is part of the claim: an ordered write is claimed only while no earlier write it
  meets is unfinished, in the claim statement itself;
- one clock: leases, due times and wake-ups are the database's `now()` plus a duration;
- `attempts` is a fencing token: a delivery that claimed attempt N may mark the task
  retrying or failed only while attempt N is still the one processing, so a stale delivery
  cannot overwrite the state of a newer one, and one attempt's outcome is recorded once;
- success is accepted from any attempt while the task is unfinished (the write happened; the
  first finisher wins and later finishers are told they lost).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Required, TypedDict, Unpack

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.core.db import DriverStatement, rowcount, run_transaction, single_statement
from services.core.tasklog.admission import admitting_insert
from services.core.tasklog.clock import clock, db_now
from services.core.tasklog.models import (
    FAIR_SHARE,
    IN_FLIGHT,
    TASK_SEQ,
    TERMINAL,
    SeqCounter,
    TaskLog,
    TaskStatus,
    idempotency_keys,
)
from services.core.tasklog.rows import TaskRows, forget_idempotency_key, idempotency_holder
from services.core.tasklog.statements import (
    CLAIM,
    CLAIM_ORDERED,
    claimable,
    insert_task,
    retrying,
    running,
    status_change,
)

__all__ = [
    "AcceptedColumns",
    "BeforeInsert",
    "Claim",
    "Refusal",
    "TaskLogRepository",
    "accepted_values",
    "claimable",
    "forget_idempotency_key",
    "idempotency_holder",
    "insert_accepted",
    "next_seq",
]


class Refusal(StrEnum):
    """Why the log refused to let a delivery claim or put off a task."""

    MISSING = "missing"  # no such task
    FINISHED = "finished"  # success or failed: the delivery is a duplicate
    BUSY = "busy"  # another delivery runs it under a live lease
    DEADLINE = "deadline"  # putting it off would pass its deadline: run it now
    BLOCKER_DONE = "blocker_done"  # the write it would wait for has finished meanwhile
    BLOCKED = "blocked"  # an earlier write it meets is unfinished: it must wait for it
    NOT_DUE = "not_due"  # it waits for an earlier attempt's requests to settle


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
    seq: int = 0
    # The task downstream idempotency keys derive from (a manual retry's original).
    origin_task_id: str = ""
    # The database's time when the attempt was claimed (the clock of its deadline).
    claimed_at: datetime | None = None
    # The Idempotency-Keys downstream writes carry, tried in order (see TaskLog).
    idempotency_keys: tuple[str, ...] = ()
    # This process's monotonic clock when the claim was read (to count from `claimed_at`).
    claimed_mono: float = 0.0
    # Attempts that killed or hung their worker, this claim's predecessor included.
    lost_attempts: int = 0
    # Whose write it is (fair share hands its place on when it finishes).
    customer_id: str | None = None


@dataclass(frozen=True)
class BeforeInsert:
    """Work done inside the transaction that records an accepted task, before the row is
    added: `run` may write related state atomically with the acceptance and returns the
    payload to store. It runs only for payloads it `applies` to; the others are recorded by
    one statement that commits on its own (one round trip instead of three)."""

    applies: Callable[[dict[str, Any]], bool]
    run: Callable[[Session, dict[str, Any]], dict[str, Any]]


# What an accepted row's INSERT computes (statements.insert_task) rather than stores as given.
_COMPUTED = frozenset({"at", "deadline_s", "published", "deadline_at", "seq"})


def _claim_of(task_id: str, row: Any, claimed_at: datetime | None) -> Claim:
    return Claim(
        task_id=task_id,
        task_name=row.task_name,
        attempt=row.attempts,
        retry_count=row.retry_count,
        payload=row.payload,
        sealed_secrets=row.sealed_secrets,
        deadline_at=row.deadline_at,
        checkpoint=row.checkpoint,
        seq=row.seq,
        origin_task_id=row.origin_task_id or task_id,
        claimed_at=claimed_at,
        idempotency_keys=idempotency_keys(task_id, row.origin_task_id, row.prior_keys),
        claimed_mono=time.monotonic(),
        lost_attempts=row.lost_attempts,
        customer_id=row.customer_id,
    )


class TaskLogRepository(TaskRows):
    """Task-log access; each method is its own short transaction."""

    def create(
        self,
        *,
        payload: dict[str, Any],
        before_insert: BeforeInsert | None = None,
        fair_bound: int | None = None,
        **columns: Unpack[AcceptedColumns],
    ) -> TaskLog:
        """Record an accepted task as pending (IntegrityError on a used key or retried task).

        The deadline is `deadline_at`, or `budget_s` after acceptance by the database's
        clock. `seq` is drawn from the acceptance sequence unless given (a manual retry of a
        catalog write keeps the number of the task it retries). With `fair_bound`, the task
        waits for its turn in the log (`held`, fair_share) when its customer has that much
        outstanding on its queue, or earlier writes of its wait already (`tasklog.admission`).
        """
        values = accepted_values(**columns)
        # One INSERT commits on its own; a hook's statements (or SQLite's counter) and the
        # INSERT must commit together.
        sqlite = self._sessions.kw["bind"].dialect.name == "sqlite"
        hook = before_insert if before_insert and before_insert.applies(payload) else None
        if hook is not None or ("seq" not in values and sqlite):
            return run_transaction(
                self._sessions,
                lambda session: insert_accepted(session, values, payload, hook, fair_bound),
            )
        row = {**values, "payload": payload}
        made = _insert_of(row, fair_bound).run(self._sessions, _params(row, fair_bound)).one()
        return _accepted_row(row, made, fair_bound)

    def reserve(
        self, payload: dict[str, Any], before_insert: BeforeInsert | None = None
    ) -> tuple[int, dict[str, Any]]:
        """A fresh acceptance number for a write done without a task, with its hook run."""

        def draw(session: Session) -> tuple[int, dict[str, Any]]:
            stored = payload
            if before_insert is not None and before_insert.applies(payload):
                stored = before_insert.run(session, payload)
            return next_seq(session), stored

        return run_transaction(self._sessions, draw)

    def park(
        self,
        *,
        task_id: str,
        task_name: str,
        queue: str,
        payload: dict[str, Any],
        reason: str,
        error: str,
        customer_id: str | None = None,
        order_scope: str | None = None,
        order_key: str | None = None,
    ) -> bool:
        """Record a task that must not run as failed for `reason`, for an operator to see
        (and redrive); False if a row of that task exists already."""
        row: dict[str, Any] = dict(
            task_id=task_id,
            task_name=task_name,
            queue=queue,
            payload=payload,
            customer_id=customer_id,
            order_scope=order_scope,
            order_key=order_key,
            status=TaskStatus.FAILED,
            error_message=error,
            error_kind="permanent",
            failure_reason=reason,
            retry_count=0,
            attempts=0,
            lost_attempts=0,
            held=False,
            at=None,
            deadline_s=0.0,
            finished=True,
        )
        try:
            insert_task(tuple(row)).run(self._sessions, row)
        except IntegrityError:
            return False
        return True

    def claim(
        self,
        task_id: str,
        *,
        now: datetime | None = None,
        lease_s: float = 3600.0,
        owner: str | None = None,
        ordered: bool = False,
    ) -> Claim | Refusal:
        """Start a new attempt under a lease, or say why this delivery may not.

        With `ordered`, only while no earlier write the task meets is unfinished
        (Refusal.BLOCKED otherwise).
        """
        params = {"claimed": task_id, "at": now, "lease_s": lease_s, "owner": owner}
        statement = CLAIM_ORDERED if ordered else CLAIM
        row = statement.run(self._sessions, params).one_or_none()
        if row is None:
            return self.refusal(task_id, now=now, ordered=ordered)
        return _claim_of(task_id, row, row.updated_at)

    def refusal(
        self, task_id: str, *, now: datetime | None = None, ordered: bool = False
    ) -> Refusal:
        """Why a task cannot be claimed now: missing, finished, busy, not due, or (an
        ordered write that could otherwise be claimed) blocked by an earlier write."""
        at = clock("at")
        stmt = select(
            TaskLog.status,
            (TaskLog.lease_until > at).label("leased"),
            claimable(at).label("free"),
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
        if ordered and row.free:
            return Refusal.BLOCKED
        return Refusal.BUSY

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
        values: dict[str, Any] = {"updated_at": db_now()}
        if checkpoint is not None:
            values["checkpoint"] = checkpoint
        if done is not None:
            values["progress_done"] = done
        if total is not None:
            values["progress_total"] = total
        stmt = update(TaskLog).where(TaskLog.task_id == task_id, running(attempt)).values(**values)
        with single_statement(self._sessions) as session:
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
        wake_waiters: bool = False,
        now: datetime | None = None,
    ) -> bool:
        """Move an unfinished task to `status`; False if the guard refused the change.

        With `attempt`, a non-success change applies only while that attempt is current.
        With `wake_waiters`, tasks held until this one finished become due in the same
        transaction: its second statement sees every hold committed before the first one
        took the row (READ COMMITTED), so no wake-up is lost between the two.
        """
        stmt = status_change(
            status, guarded=attempt is not None and status != TaskStatus.SUCCESS,
            with_error=error is not None, with_reason=failure_reason is not None,
        )  # fmt: skip
        params = {
            "changed": task_id,
            "at": now,
            "result": result,
            "error": error,
            "error_kind": error_kind,
            "failure_reason": failure_reason,
            "attempt": attempt,
        }
        if not (wake_waiters and status in TERMINAL):
            return stmt.run(self._sessions, params).rowcount == 1

        def finish(session: Session) -> bool:
            changed = rowcount(session.connection().execute(stmt.statement, params)) == 1
            if changed:
                session.execute(
                    update(TaskLog)
                    .where(TaskLog.held, TaskLog.waiting_for == task_id)
                    .values(next_attempt_at=clock("at")),
                    {"at": now},
                )
            return changed

        return run_transaction(self._sessions, finish)

    def mark_retrying(
        self,
        task_id: str,
        *,
        attempt: int,
        error: str | None,
        error_kind: str | None,
        next_attempt_at: datetime | None = None,
        delay_s: float = 0.0,
        hold: bool = False,
        reason: str | None = None,
        counted: bool = True,
        now: datetime | None = None,
    ) -> bool:
        """Record a failed attempt that will be retried (`counted`: as a retry, in the same
        step), due at `next_attempt_at` or `delay_s` from now by the database's clock. An
        `error` of None keeps the last one (an attempt that did not fail, but must wait).

        With `hold`, the retry waits in the log (no broker message) until the releaser
        publishes it when due; `reason` says why (default: backoff).
        """
        params = {
            "changed": task_id,
            "attempt": attempt,
            "error": error,
            "error_kind": error_kind,
            "due": next_attempt_at,
            "delay_s": delay_s,
            "held": hold,
            "reason": (reason or "backoff") if hold else None,
            "at": now,
        }
        return retrying(counted=counted).run(self._sessions, params).rowcount == 1

    def lost_attempt(self, task_id: str, *, owner: str) -> Claim | None:
        """The attempt `owner` was running, if it still is the task's live attempt."""
        stmt = select(TaskLog, db_now().label("now")).where(
            TaskLog.task_id == task_id,
            TaskLog.status == TaskStatus.PROCESSING,
            TaskLog.lease_owner == owner,
        )
        with self._sessions() as session:
            found = session.execute(stmt).first()
        if found is None:
            return None
        row, now = found
        return _claim_of(task_id, row, now)

    def count_lost(self, task_id: str, *, attempt: int) -> int | None:
        """Count attempt `attempt` as lost with its worker; the task's count, or None if the
        attempt is no longer the one processing."""
        stmt = (
            update(TaskLog)
            .where(TaskLog.task_id == task_id, running(attempt))
            .values(lost_attempts=TaskLog.lost_attempts + 1)
            .returning(TaskLog.lost_attempts)
        )
        return run_transaction(self._sessions, lambda session: session.scalar(stmt))


class AcceptedColumns(TypedDict, total=False):
    """What accepting a task gives its row (`accepted_values`); the rest are defaults.

    The deadline is `deadline_at`, or `budget_s` after acceptance. Without `seq` the database
    draws it; with `seq_pending` it draws it again when the transaction that writes the row
    commits (migration 0010). `now` is the acceptance time (None: the database's clock);
    `published`: the message is noted as published at that time.
    """

    task_id: Required[str]
    task_name: Required[str]
    queue: Required[str]
    deadline_at: datetime | None
    budget_s: float | None
    user_id: str | None
    customer_id: str | None
    idempotency_key: str | None
    sealed_secrets: str | None
    request_hash: str | None
    retry_of: str | None
    seq: int | None
    origin_task_id: str | None
    origin_seq: int | None
    prior_keys: list[str] | None
    order_scope: str | None
    order_key: str | None
    checkpoint: dict[str, Any] | None
    published: bool
    now: datetime | None
    seq_pending: bool


# The columns an accepted row takes from its acceptance (None when not given).
_GIVEN = (
    "task_id",
    "task_name",
    "queue",
    "user_id",
    "customer_id",
    "idempotency_key",
    "sealed_secrets",
    "request_hash",
    "retry_of",
    "origin_task_id",
    "origin_seq",
    "prior_keys",
    "order_scope",
    "order_key",
    "checkpoint",
)


def accepted_values(**columns: Unpack[AcceptedColumns]) -> dict[str, Any]:
    """The values of an accepted task's INSERT, its payload apart (see AcceptedColumns and
    statements.insert_task for the times it computes)."""
    given: dict[str, Any] = dict(columns)
    if (given.get("deadline_at") is None) == (given.get("budget_s") is None):
        raise ValueError("give the deadline as deadline_at or budget_s, one of them")
    values = {name: given.get(name) for name in _GIVEN}
    values.update(
        status=TaskStatus.PENDING,
        retry_count=0,
        attempts=0,
        lost_attempts=0,
        held=False,
        at=given.get("now"),
    )
    if given.get("deadline_at") is not None:
        values["deadline_at"] = given["deadline_at"]
    else:
        values["deadline_s"] = given["budget_s"]
    if given.get("published"):
        values["published"] = True
    if given.get("seq") is not None:
        values["seq"] = given["seq"]
    if given.get("seq_pending"):
        values["seq_pending"] = True
    return values


def insert_accepted(
    session: Session,
    values: dict[str, Any],
    payload: dict[str, Any],
    hook: BeforeInsert | None,
    fair_bound: int | None = None,
) -> TaskLog:
    """Write an accepted task inside `session`'s transaction: its hook's state, then its row.

    Both commit or roll back with that transaction: the task log's own one (`create`), or a
    caller's (the outbox). Statements go through `session.execute`, so that a session made
    for a caller's connection can point them at the task log's schema. With `fair_bound`,
    the row waits for its fair-share turn if its customer is at that bound.
    """
    if hook is not None and hook.applies(payload):
        payload = hook.run(session, payload)
    if "seq" not in values and session.get_bind().dialect.name == "sqlite":
        values = {**values, "seq": next_seq(session)}
    row = {**values, "payload": payload}
    made = session.execute(_insert_of(row, fair_bound).statement, _params(row, fair_bound)).one()
    return _accepted_row(row, made, fair_bound)


def _insert_of(row: dict[str, Any], fair_bound: int | None) -> DriverStatement:
    # The plain INSERT, or the one that also decides the customer's fair-share turn.
    return insert_task(tuple(row)) if fair_bound is None else admitting_insert(tuple(row))


def _params(row: dict[str, Any], fair_bound: int | None) -> dict[str, Any]:
    return row if fair_bound is None else {**row, "fair_bound": fair_bound}


def _accepted_row(row: dict[str, Any], made: Any, fair_bound: int | None) -> TaskLog:
    """The TaskLog of an accepted row: what was given, and what the INSERT computed (its
    times; a write past its customer's fair-share bound waits, with no message)."""
    written = TaskLog(
        **{k: v for k, v in row.items() if k not in _COMPUTED},
        id=made.id,
        seq=made.seq,
        created_at=made.created_at,
        updated_at=made.created_at,
        deadline_at=made.deadline_at,
        published_at=made.created_at if row.get("published") else None,
    )
    if fair_bound is not None and made.held:
        written.held, written.wait_reason, written.published_at = True, FAIR_SHARE, None
    return written


def next_seq(session: Session) -> int:
    """Draw the next acceptance number inside `session`'s transaction."""
    if session.get_bind().dialect.name == "postgresql":
        return int(session.execute(select(TASK_SEQ.next_value())).scalar_one())
    # SQLite: AUTOINCREMENT never reuses a number, even after the row is gone.
    drawn = int(session.execute(insert(SeqCounter).returning(SeqCounter.id)).scalar_one())
    session.execute(delete(SeqCounter).where(SeqCounter.id < drawn))
    return drawn
