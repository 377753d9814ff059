"""The task-log table."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
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


class Base(DeclarativeBase):
    """Declarative base of the task-log schema."""


# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY auto-increments).
_BigId = BigInteger().with_variant(Integer(), "sqlite")


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
    # Why a failed task stopped: permanent_error, deadline_exhausted, max_retries_exhausted.
    failure_reason: Mapped[str | None] = mapped_column(String(32))
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    # Deliveries that started running; the fencing token of the transitions.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
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

    __table_args__ = (
        Index("ix_task_log_status_updated", "status", "updated_at"),
        Index("ix_task_log_user_created", "user_id", "created_at"),
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
