"""The task-log table."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    Sequence,
    String,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class TaskStatus(StrEnum):
    """Life of a task: pending -> processing -> (retrying -> processing)* -> success | failed."""

    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    SUCCESS = "success"
    FAILED = "failed"


TERMINAL = frozenset({TaskStatus.SUCCESS, TaskStatus.FAILED})
# The wait of a retry whose earlier attempt may still have a request in flight downstream
# (its process died mid-call, or a delete-all's last sweep): no delivery may run it before
# it is due, whoever sends it.
IN_FLIGHT = "in_flight"
UNFINISHED_SQL = "status NOT IN ('success', 'failed')"
# Fair share (services/core/fairness.py). What counts against a customer's bound: unfinished
# and not waiting for its turn or for an earlier write of its entity (an ordering wait ends
# only when that write ran, which may itself wait for its turn). Written out as literals, as
# the partial indexes say them, so that PostgreSQL proves a query may use its index whatever
# the parameters.
FAIR_SHARE = "fair_share"
FAIR_COUNTED_SQL = f"{UNFINISHED_SQL} AND NOT (held AND wait_reason IN ('{FAIR_SHARE}', 'order'))"
FAIR_WAITING_SQL = f"held AND wait_reason = '{FAIR_SHARE}'"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite drops the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the task log; use UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def idempotency_keys(
    task_id: str, origin_task_id: str | None, prior_keys: list[str] | None
) -> tuple[str, ...]:
    """The keys a write sends downstream, tried in order: a redrive that is a new write tries
    those of its earlier incarnations first, then its own; a retry that keeps its original's
    place sends the original's key only."""
    if prior_keys is not None:
        return (*prior_keys, task_id)
    return (origin_task_id or task_id,)


class Base(DeclarativeBase):
    """Declarative base of the task-log schema."""


# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY auto-increments).
_BigId = BigInteger().with_variant(Integer(), "sqlite")

# Acceptance order. PostgreSQL draws it from this sequence; SQLite has no sequences, so the
# repository draws it from `SeqCounter` there.
TASK_SEQ = Sequence("task_log_seq")


class SeqCounter(Base):
    """SQLite's stand-in for `task_log_seq`: AUTOINCREMENT never hands out a number twice."""

    __tablename__ = "task_seq"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)


class TaskLog(Base):
    """One accepted write: what was asked, where it stands, what came of it."""

    __tablename__ = "task_log"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(64), unique=True)
    task_name: Mapped[str] = mapped_column(String(128))
    queue: Mapped[str] = mapped_column(String(32))
    # The plan has an integer FK; user ids come from tokens of other systems, so a string.
    user_id: Mapped[str | None] = mapped_column(String(128))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Fernet ciphertext of the task's secrets; never clear text.
    sealed_secrets: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.PENDING)
    result: Mapped[Any | None] = mapped_column(JSON)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(16))
    # Why a failed task stopped: permanent_error, deadline_exhausted, max_retries_exhausted,
    # poison (a message no worker could run, or one that killed or hung workers).
    failure_reason: Mapped[str | None] = mapped_column(String(32))
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    # Deliveries that started running; the fencing token of the transitions.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Attempts that killed or hung their pool process (or worker) without recording their
    # outcome; at POISON_MAX_LOST_ATTEMPTS the task fails as `poison`.
    lost_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What a task already did, so that a retry redoes only the rest (bulk items, import chunks).
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress_done: Mapped[int | None] = mapped_column(Integer)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    # Hash of the request that carried `idempotency_key`, to tell a repeat from a misuse.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # A manual retry is a new task; this links it to the failed one it retries.
    retry_of: Mapped[str | None] = mapped_column(String(64))
    # The order in which writes were accepted, from one monotonic source (a database
    # sequence): the version domain of every write. A manual retry keeps the number of the
    # write it retries, and `origin_task_id` names that write (its idempotency key downstream).
    seq: Mapped[int] = mapped_column(BigInteger, TASK_SEQ, nullable=False)
    origin_task_id: Mapped[str | None] = mapped_column(String(64))
    # A redrive of a write without versions (ChatbotMobile) is a new write at a new `seq`; it
    # answers for the original's place (`origin_seq`: a write is later than it when its own
    # original place is), and first tries the Idempotency-Keys an earlier incarnation may
    # have used (`prior_keys`, oldest first) before its own.
    origin_seq: Mapped[int | None] = mapped_column(BigInteger)
    prior_keys: Mapped[list[str] | None] = mapped_column(JSON)
    # Accepted inside a caller's own transaction (the outbox): its `seq` is drawn again when
    # that transaction commits, so that acceptance order is commit order (migration 0010).
    # Server default only: the API's INSERT does not carry it.
    seq_pending: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Per-entity ordering (taskdefs.Ordering): writes of one scope whose keys meet take effect
    # in `seq` order. A NULL key covers the whole scope (a delete-all, an import).
    order_scope: Mapped[str | None] = mapped_column(String(300))
    order_key: Mapped[str | None] = mapped_column(String(600))
    # Waiting in the log with no broker message; the scheduler's releaser publishes it when it
    # is due (`next_attempt_at`) and what it waits for (`wait_reason`, `waiting_for`) allows.
    held: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    wait_reason: Mapped[str | None] = mapped_column(String(64))
    waiting_for: Mapped[str | None] = mapped_column(String(64))
    # The running attempt's lease: while it lasts, no other delivery may claim the task.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_task_log_status_updated", "status", "updated_at"),
        Index("ix_task_log_user_created", "user_id", "created_at"),
        # A caller's own tasks, newest first (my-tasks): one index for both filters and the
        # order, so a page costs the same however long the caller's history.
        Index("ix_task_log_user_customer_created", "user_id", "customer_id", "created_at", "id"),
        Index("ix_task_log_customer_created", "customer_id", "created_at"),
        Index("ix_task_log_task_name", "task_name"),
        Index(
            "uq_task_log_customer_idempotency",
            "customer_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
        Index(
            "ix_task_log_order_open",
            "order_scope",
            "seq",
            postgresql_where=text(f"order_scope IS NOT NULL AND {UNFINISHED_SQL}"),
            sqlite_where=text(f"order_scope IS NOT NULL AND {UNFINISHED_SQL}"),
        ),
        Index(
            "ix_task_log_order_scope",
            "order_scope",
            "seq",
            postgresql_where=text("order_scope IS NOT NULL"),
            sqlite_where=text("order_scope IS NOT NULL"),
        ),
        Index(
            "ix_task_log_held_seq",
            "queue",
            "wait_reason",
            "seq",
            postgresql_where=text("held"),
            sqlite_where=text("held"),
        ),
        Index(
            "ix_task_log_held_due",
            "queue",
            "wait_reason",
            "next_attempt_at",
            postgresql_where=text("held"),
            sqlite_where=text("held"),
        ),
        Index(
            "ix_task_log_held_deadline",
            "queue",
            "deadline_at",
            postgresql_where=text("held"),
            sqlite_where=text("held"),
        ),
        Index(
            "ix_task_log_waiting_for",
            "waiting_for",
            postgresql_where=text("held AND waiting_for IS NOT NULL"),
            sqlite_where=text("held AND waiting_for IS NOT NULL"),
        ),
        # Fair share: a customer's outstanding work on a queue (its bound), and its writes
        # waiting for their turn in acceptance order.
        Index(
            "ix_task_log_fair_counted",
            "customer_id",
            "queue",
            postgresql_where=text(FAIR_COUNTED_SQL),
            sqlite_where=text(FAIR_COUNTED_SQL),
        ),
        Index(
            "ix_task_log_fair_waiting",
            "queue",
            "customer_id",
            "seq",
            postgresql_where=text(FAIR_WAITING_SQL),
            sqlite_where=text(FAIR_WAITING_SQL),
        ),
        Index(
            "ix_task_log_seq_pending",
            "id",
            postgresql_where=text("seq_pending"),
            sqlite_where=text("seq_pending"),
        ),
        Index(
            "uq_task_log_retry_of",
            "retry_of",
            unique=True,
            postgresql_where=text("retry_of IS NOT NULL"),
            sqlite_where=text("retry_of IS NOT NULL"),
        ),
    )

    @property
    def is_finished(self) -> bool:
        """Whether the task reached a terminal status."""
        return self.status in TERMINAL

    @property
    def place(self) -> int:
        """Its place in acceptance order as the write it is (a redrive: its original's)."""
        return self.origin_seq if self.origin_seq is not None else self.seq

    @property
    def idempotency_keys(self) -> tuple[str, ...]:
        """The Idempotency-Keys its downstream writes carry, in the order they are tried."""
        return idempotency_keys(self.task_id, self.origin_task_id, self.prior_keys)

    @property
    def idempotency_origin(self) -> str:
        """The task id downstream idempotency keys derive from (a retry's original)."""
        return self.origin_task_id or self.task_id


class TaskLogInstance(Base):
    """The identity of one task log (one row, made by migration 0010).

    A caller who writes tasks through its own database session must be writing into the task
    log the workers read (DATABASE_URL); comparing this id on both sides tells.
    """

    __tablename__ = "task_log_instance"

    instance_id: Mapped[str] = mapped_column(String(36), primary_key=True)
