"""Reads and guarded transitions of the task log.

Every change is one conditional UPDATE with its arithmetic done in SQL, so two workers racing
on one task can neither lose an update nor move a finished task back:
- nothing leaves a terminal status (success, failed);
- one live attempt per task: a claim takes a lease (the hard time limit plus a margin), and
  no other delivery may claim the task while the lease lasts;
- `attempts` is a fencing token: a delivery that claimed attempt N may mark the task
  retrying or failed only while attempt N is still the one processing, so a stale delivery
  cannot overwrite the state of a newer one, and one attempt's outcome is recorded once;
- success is accepted from any attempt while the task is unfinished (the write happened; the
  first finisher wins and later finishers are told they lost).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Required, TypedDict, Unpack, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import DriverStatement, rowcount, single_statement, transaction
from services.core.tasklog.admission import admitting_insert
from services.core.tasklog.models import (
    FAIR_SHARE,
    TASK_SEQ,
    TERMINAL,
    SeqCounter,
    TaskLog,
    TaskStatus,
    utcnow,
)

# Plain comparisons, not IN lists: SQLAlchemy expands an IN list on every execution, even
# of a statement built once.
_UNFINISHED = and_(*(TaskLog.status != s.value for s in sorted(TERMINAL)))


def _running(attempt: int) -> ColumnElement[bool]:
    # The outcome of an attempt belongs to that attempt while it runs, and is recorded once.
    return and_(TaskLog.status == TaskStatus.PROCESSING, TaskLog.attempts == attempt)


def claimable(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Rows a delivery may take: waiting, or processing under a lease that ran out."""
    lapsed = and_(
        TaskLog.status == TaskStatus.PROCESSING,
        or_(TaskLog.lease_until.is_(None), TaskLog.lease_until <= now),
    )
    waiting = or_(TaskLog.status == TaskStatus.PENDING, TaskLog.status == TaskStatus.RETRYING)
    return or_(waiting, lapsed)


class Refusal(StrEnum):
    """Why the log refused to let a delivery claim or put off a task."""

    MISSING = "missing"  # no such task
    FINISHED = "finished"  # success or failed: the delivery is a duplicate
    BUSY = "busy"  # another delivery runs it under a live lease
    DEADLINE = "deadline"  # putting it off would pass its deadline: run it now
    BLOCKER_DONE = "blocker_done"  # the write it would wait for has finished meanwhile


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


# One statement on the table (not the ORM entity, whose bulk-insert machinery costs more
# than the statement), its parameters passed apart: compiled once, not per request.
_TABLE = cast(Table, TaskLog.__table__)


@functools.cache
def _insert(names: tuple[str, ...]) -> DriverStatement:
    """The INSERT of an accepted task with these columns (without `seq`, the database
    draws it), built once per set of columns."""
    values = {name: bindparam(name, type_=_TABLE.c[name].type) for name in names}
    return DriverStatement(insert(_TABLE).values(values).returning(_TABLE.c.id, _TABLE.c.seq))


# The claim, built once (a statement built per call spends a worker's time on SQLAlchemy's
# cache keys): a new attempt under a lease, for a row that may be taken now.
_AT = bindparam("at", type_=_TABLE.c.updated_at.type)
_CLAIM = DriverStatement(
    update(_TABLE)
    .where(_TABLE.c.task_id == bindparam("claimed"), claimable(_AT))
    .values(
        status=TaskStatus.PROCESSING,
        attempts=_TABLE.c.attempts + 1,
        next_attempt_at=None,
        held=False,
        wait_reason=None,
        waiting_for=None,
        lease_until=bindparam("lease_until", type_=_TABLE.c.lease_until.type),
        lease_owner=bindparam("owner"),
        updated_at=_AT,
        # A task still `processing` when claimed again had an attempt that died with its
        # worker (its lease ran out, nobody recorded it): counted, by task id.
        lost_attempts=case(
            (_TABLE.c.status == TaskStatus.PROCESSING, _TABLE.c.lost_attempts + 1),
            else_=_TABLE.c.lost_attempts,
        ),
    )
    .returning(
        _TABLE.c.task_name,
        _TABLE.c.attempts,
        _TABLE.c.retry_count,
        _TABLE.c.payload,
        _TABLE.c.sealed_secrets,
        _TABLE.c.deadline_at,
        _TABLE.c.checkpoint,
        _TABLE.c.seq,
        _TABLE.c.origin_task_id,
        _TABLE.c.lost_attempts,
        _TABLE.c.customer_id,
    )
)


@functools.cache
def _status_change(
    status: TaskStatus, *, guarded: bool, with_error: bool, with_reason: bool
) -> DriverStatement:
    """The statement of one kind of status change, built once per kind (see _CLAIM)."""
    at = bindparam("at", type_=_TABLE.c.updated_at.type)
    values: dict[str, Any] = {"status": status, "updated_at": at}
    if status in TERMINAL:
        values.update(
            finished_at=at,
            next_attempt_at=None,
            held=False,
            wait_reason=None,
            waiting_for=None,
            lease_until=None,
        )
    if status == TaskStatus.SUCCESS:
        values.update(
            result=bindparam("result", type_=_TABLE.c.result.type),
            error_kind=None,
            failure_reason=None,
        )
    if with_error:
        values.update(error_message=bindparam("error"), error_kind=bindparam("error_kind"))
    if with_reason:
        values["failure_reason"] = bindparam("failure_reason")
    stmt = update(_TABLE).where(_TABLE.c.task_id == bindparam("changed"), _UNFINISHED)
    if guarded:
        stmt = stmt.where(
            _TABLE.c.status == TaskStatus.PROCESSING, _TABLE.c.attempts == bindparam("attempt")
        )
    return DriverStatement(stmt.values(**values))


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
        payload: dict[str, Any],
        before_insert: BeforeInsert | None = None,
        fair_bound: int | None = None,
        **columns: Unpack[AcceptedColumns],
    ) -> TaskLog:
        """Record an accepted task as pending (IntegrityError on a used key or retried task).

        `seq` is drawn from the acceptance sequence unless given (a manual retry keeps the
        number of the task it retries). With `fair_bound`, the task waits for its turn in the
        log (`held`, fair_share) when its customer has that much outstanding on its queue, or
        earlier writes of its wait already (`tasklog.admission`).
        """
        values = accepted_values(**columns)
        # One INSERT commits on its own; a hook's statements (or SQLite's counter) and the
        # INSERT must commit together.
        sqlite = self._sessions.kw["bind"].dialect.name == "sqlite"
        hook = before_insert if before_insert and before_insert.applies(payload) else None
        if hook is not None or ("seq" not in values and sqlite):
            with transaction(self._sessions) as session:
                return insert_accepted(session, values, payload, hook, fair_bound)
        row = {**values, "payload": payload}
        made = _insert_of(row, fair_bound).run(self._sessions, _params(row, fair_bound)).one()
        return _accepted_row(row, made, fair_bound)

    def reserve(
        self, payload: dict[str, Any], before_insert: BeforeInsert | None = None
    ) -> tuple[int, dict[str, Any]]:
        """A fresh acceptance number for a write done without a task, with its hook run."""
        with transaction(self._sessions) as session:
            if before_insert is not None and before_insert.applies(payload):
                payload = before_insert.run(session, payload)
            return next_seq(session), payload

    def oldest_open_seq(self, queue: str) -> int | None:
        """The lowest `seq` of a task of `queue` that may still run: unfinished, or failed
        (a manual retry keeps its number)."""
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

    def claim(
        self,
        task_id: str,
        *,
        now: datetime | None = None,
        lease_s: float = 3600.0,
        owner: str | None = None,
    ) -> Claim | Refusal:
        """Start a new attempt under a lease, or say why this delivery may not."""
        at = now or utcnow()
        params = {
            "claimed": task_id,
            "at": at,
            "lease_until": at + timedelta(seconds=lease_s),
            "owner": owner,
        }
        row = _CLAIM.run(self._sessions, params).one_or_none()
        if row is None:
            return self.refusal(task_id)
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
            lost_attempts=row.lost_attempts,
            customer_id=row.customer_id,
        )

    def refusal(self, task_id: str) -> Refusal:
        """Why a task cannot be claimed now: missing, finished or busy."""
        with single_statement(self._sessions) as session:
            status = session.scalar(select(TaskLog.status).where(TaskLog.task_id == task_id))
        if status is None:
            return Refusal.MISSING
        return Refusal.FINISHED if status in TERMINAL else Refusal.BUSY

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
        transaction, so no wake-up is lost between the two.
        """
        stmt = _status_change(
            status, guarded=attempt is not None and status != TaskStatus.SUCCESS,
            with_error=error is not None, with_reason=failure_reason is not None,
        )  # fmt: skip
        params = {
            "changed": task_id,
            "at": now or utcnow(),
            "result": result,
            "error": error,
            "error_kind": error_kind,
            "failure_reason": failure_reason,
            "attempt": attempt,
        }
        if not (wake_waiters and status in TERMINAL):
            return stmt.run(self._sessions, params).rowcount == 1
        with transaction(self._sessions) as session:
            changed = rowcount(session.connection().execute(stmt.statement, params)) == 1
            if changed:
                session.execute(
                    update(TaskLog)
                    .where(TaskLog.held, TaskLog.waiting_for == task_id)
                    .values(next_attempt_at=params["at"])
                )
        return changed

    def mark_retrying(
        self,
        task_id: str,
        *,
        attempt: int,
        error: str,
        error_kind: str,
        next_attempt_at: datetime,
        hold: bool = False,
        now: datetime | None = None,
    ) -> bool:
        """Record a failed attempt that will be retried; counts the retry in the same step.

        With `hold`, the retry waits in the log (no broker message) until the releaser
        publishes it at `next_attempt_at`.
        """
        stmt = (
            update(TaskLog)
            .where(TaskLog.task_id == task_id, _running(attempt))
            .values(
                status=TaskStatus.RETRYING,
                retry_count=TaskLog.retry_count + 1,
                error_message=error,
                error_kind=error_kind,
                next_attempt_at=next_attempt_at,
                held=hold,
                wait_reason="backoff" if hold else None,
                lease_until=None,
                updated_at=now or utcnow(),
            )
        )
        with single_statement(self._sessions) as session:
            return rowcount(session.execute(stmt)) == 1

    def lost_attempt(self, task_id: str, *, owner: str) -> Claim | None:
        """The attempt `owner` was running, if it still is the task's live attempt."""
        stmt = select(TaskLog).where(
            TaskLog.task_id == task_id,
            TaskLog.status == TaskStatus.PROCESSING,
            TaskLog.lease_owner == owner,
        )
        with self._sessions() as session:
            row = session.scalars(stmt).first()
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
            seq=row.seq,
            origin_task_id=row.idempotency_origin,
            lost_attempts=row.lost_attempts,
            customer_id=row.customer_id,
        )

    def count_lost(self, task_id: str, *, attempt: int) -> int | None:
        """Count attempt `attempt` as lost with its worker; the task's count, or None if the
        attempt is no longer the one processing."""
        stmt = (
            update(TaskLog)
            .where(TaskLog.task_id == task_id, _running(attempt))
            .values(lost_attempts=TaskLog.lost_attempts + 1)
            .returning(TaskLog.lost_attempts)
        )
        with transaction(self._sessions) as session:
            return session.scalar(stmt)

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


class AcceptedColumns(TypedDict, total=False):
    """What accepting a task gives its row (`accepted_values`); the rest are defaults.

    Without `seq` the database draws it; with `seq_pending` it draws it again when the
    transaction that writes the row commits (migration 0010). `now` is the acceptance time.
    """

    task_id: Required[str]
    task_name: Required[str]
    queue: Required[str]
    deadline_at: Required[datetime]
    user_id: str | None
    customer_id: str | None
    idempotency_key: str | None
    sealed_secrets: str | None
    request_hash: str | None
    retry_of: str | None
    seq: int | None
    origin_task_id: str | None
    order_scope: str | None
    order_key: str | None
    checkpoint: dict[str, Any] | None
    published_at: datetime | None
    now: datetime | None
    seq_pending: bool


# The columns an accepted row takes from its acceptance (None when not given).
_GIVEN = (
    "task_id",
    "task_name",
    "queue",
    "deadline_at",
    "user_id",
    "customer_id",
    "idempotency_key",
    "sealed_secrets",
    "request_hash",
    "retry_of",
    "origin_task_id",
    "order_scope",
    "order_key",
    "checkpoint",
    "published_at",
)


def accepted_values(**columns: Unpack[AcceptedColumns]) -> dict[str, Any]:
    """The columns of an accepted task's row, its payload apart (see AcceptedColumns)."""
    at = columns.get("now") or utcnow()
    given: dict[str, Any] = dict(columns)
    values = {name: given.get(name) for name in _GIVEN}
    values.update(
        status=TaskStatus.PENDING,
        retry_count=0,
        attempts=0,
        lost_attempts=0,
        held=False,
        created_at=at,
        updated_at=at,
    )
    if columns.get("seq") is not None:
        values["seq"] = columns["seq"]
    if columns.get("seq_pending"):
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
    return _insert(tuple(row)) if fair_bound is None else admitting_insert(tuple(row))


def _params(row: dict[str, Any], fair_bound: int | None) -> dict[str, Any]:
    return row if fair_bound is None else {**row, "fair_bound": fair_bound}


def _accepted_row(row: dict[str, Any], made: Any, fair_bound: int | None) -> TaskLog:
    # The row as written: a write past its customer's bound waits, with no message.
    written = {**row, "id": made.id, "seq": made.seq}
    if fair_bound is not None and made.held:
        written.update(held=True, wait_reason=FAIR_SHARE, published_at=None)
    return TaskLog(**written)


def idempotency_holder(session: Session, customer_id: str | None, key: str) -> TaskLog | None:
    """The task accepted under a customer's idempotency key, as `session` sees it."""
    stmt = select(TaskLog).where(TaskLog.customer_id == customer_id, TaskLog.idempotency_key == key)
    return session.scalars(stmt).first()


def forget_idempotency_key(session: Session, task_id: str) -> None:
    """Release a task's idempotency key (its retention has passed), in `session`."""
    session.execute(update(TaskLog).where(TaskLog.task_id == task_id).values(idempotency_key=None))


def next_seq(session: Session) -> int:
    """Draw the next acceptance number inside `session`'s transaction."""
    if session.get_bind().dialect.name == "postgresql":
        return int(session.execute(select(TASK_SEQ.next_value())).scalar_one())
    # SQLite: AUTOINCREMENT never reuses a number, even after the row is gone.
    drawn = int(session.execute(insert(SeqCounter).returning(SeqCounter.id)).scalar_one())
    session.execute(delete(SeqCounter).where(SeqCounter.id < drawn))
    return drawn
