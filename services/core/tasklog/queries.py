"""Filtered, cursor-paginated reads of the task log (API task endpoints and the CLI)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from services.core.tasklog.models import TaskLog, TaskStatus


@dataclass(frozen=True)
class TaskFilter:
    """Conditions that combine with AND; None means any."""

    user_id: str | None = None
    customer_id: str | None = None
    status: TaskStatus | None = None
    task_name: str | None = None
    error_kind: str | None = None
    # Why a failed task stopped (permanent_error, deadline_exhausted, ..., poison).
    failure_reason: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # Failed tasks that a manual retry already took over are left out.
    not_retried: bool = False


class BadCursor(ValueError):
    """A cursor this API did not give out."""


def encode_cursor(row: TaskLog) -> str:
    """An opaque cursor after `row` in newest-first order."""
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


# Row ids are BIGINT: a larger number is no row of ours (and the database refuses it).
MAX_ROW_ID = 2**63 - 1


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The position a cursor names; BadCursor for anything `encode_cursor` cannot give."""
    try:
        created, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        moment, number = datetime.fromisoformat(created), int(row_id)
        if moment.tzinfo is None or not 0 < number <= MAX_ROW_ID:
            raise ValueError("not a position in the task log")
        return moment.astimezone(UTC), number
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadCursor("cursor is not one this API gave out") from exc


def _where(stmt: Select[Any], f: TaskFilter) -> Select[Any]:
    equal = {
        TaskLog.user_id: f.user_id,
        TaskLog.customer_id: f.customer_id,
        TaskLog.status: f.status,
        TaskLog.task_name: f.task_name,
        TaskLog.error_kind: f.error_kind,
        TaskLog.failure_reason: f.failure_reason,
    }
    for column, value in equal.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if f.created_after is not None:
        stmt = stmt.where(TaskLog.created_at >= f.created_after)
    if f.created_before is not None:
        stmt = stmt.where(TaskLog.created_at < f.created_before)
    if f.not_retried:
        retried = select(TaskLog.retry_of).where(TaskLog.retry_of.is_not(None))
        stmt = stmt.where(TaskLog.task_id.not_in(retried))
    return stmt


def page_statement(f: TaskFilter, *, limit: int, cursor: str | None = None) -> Select[Any]:
    """The query of one page: `limit` + 1 rows (the extra one says there is more)."""
    stmt = _where(select(TaskLog), f)
    if cursor is not None:
        created, row_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(TaskLog.created_at, TaskLog.id) < tuple_(created, row_id))
    return stmt.order_by(TaskLog.created_at.desc(), TaskLog.id.desc()).limit(limit + 1)


class TaskQueries:
    """Reads over many tasks."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def page(
        self, f: TaskFilter, *, limit: int, cursor: str | None = None
    ) -> tuple[Sequence[TaskLog], str | None]:
        """Tasks matching `f`, newest first, and the cursor of the next page (None at the end)."""
        stmt = page_statement(f, limit=limit, cursor=cursor)
        with self._sessions() as session:
            rows: list[TaskLog] = list(session.scalars(stmt))
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, encode_cursor(rows[-1]) if more and rows else None

    def count(self, f: TaskFilter) -> int:
        """How many tasks match `f`."""
        stmt = _where(select(TaskLog), f).with_only_columns(func.count()).order_by(None)
        with self._sessions() as session:
            return int(session.scalar(stmt) or 0)

    def counts_by_status_and_queue(self) -> dict[tuple[str, str], int]:
        """Task counts per (status, queue)."""
        stmt = select(TaskLog.status, TaskLog.queue, func.count()).group_by(
            TaskLog.status, TaskLog.queue
        )
        with self._sessions() as session:
            return {(s, q): int(n) for s, q, n in session.execute(stmt)}
