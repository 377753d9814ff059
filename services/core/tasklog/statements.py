"""The task log's hot statements, each built once and run on the driver (`db.DriverStatement`).

A statement built per call spends a worker's time on SQLAlchemy's cache keys; these are built
once per shape, their values passed apart. Every time they write or compare is the
database's (`clock`), unless the caller gives one (`at`).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    update,
)

from services.core.db import DriverStatement
from services.core.tasklog.clock import clock, later, when
from services.core.tasklog.models import IN_FLIGHT, TERMINAL, TaskLog, TaskStatus

# One statement on the table (not the ORM entity, whose bulk-insert machinery costs more
# than the statement), its parameters passed apart: compiled once, not per request.
TABLE = cast(Table, TaskLog.__table__)

# Plain comparisons, not IN lists: SQLAlchemy expands an IN list on every execution, even
# of a statement built once.
UNFINISHED = and_(*(TaskLog.status != s.value for s in sorted(TERMINAL)))


def running(attempt: int | Any) -> ColumnElement[bool]:
    """The outcome of an attempt belongs to that attempt while it runs, and is recorded
    once."""
    return and_(TaskLog.status == TaskStatus.PROCESSING, TaskLog.attempts == attempt)


def claimable(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """Rows a delivery may take: waiting, or processing under a lease that ran out; never a
    retry that waits for an earlier attempt's requests to settle before it is due."""
    lapsed = and_(
        TaskLog.status == TaskStatus.PROCESSING,
        or_(TaskLog.lease_until.is_(None), TaskLog.lease_until <= now),
    )
    waiting = or_(TaskLog.status == TaskStatus.PENDING, TaskLog.status == TaskStatus.RETRYING)
    settled = or_(
        TaskLog.wait_reason.is_(None),
        TaskLog.wait_reason != IN_FLIGHT,
        TaskLog.next_attempt_at <= now,
    )
    return and_(or_(waiting, lapsed), settled)


def earlier_unfinished() -> ColumnElement[bool]:
    """An earlier write of the row's ordering scope that it meets is unfinished.

    Two writes of one scope meet when their keys are equal or either is NULL (it covers
    the scope). Part of the claim statement itself: the check and the claim are one
    statement, so no earlier write can finish or appear between them unseen.
    """
    earlier = TABLE.alias("earlier")
    return exists().where(
        earlier.c.order_scope == TABLE.c.order_scope,
        earlier.c.seq < TABLE.c.seq,
        earlier.c.status != TaskStatus.SUCCESS.value,
        earlier.c.status != TaskStatus.FAILED.value,
        or_(
            earlier.c.order_key.is_(None),
            TABLE.c.order_key.is_(None),
            earlier.c.order_key == TABLE.c.order_key,
        ),
    )


# Columns an INSERT computes instead of taking them as given (see `insert_task`).
SERVER_TIMES = frozenset({"at", "deadline_s", "published", "finished"})


def accepted_columns(names: tuple[str, ...]) -> dict[str, Any]:
    """The values of an accepted task's INSERT with these names (see `insert_task`)."""
    at = clock("at")
    values: dict[str, Any] = {
        name: bindparam(name, type_=TABLE.c[name].type)
        for name in names
        if name not in SERVER_TIMES
    }
    values.update(created_at=at, updated_at=at)
    if "deadline_s" in names:
        values["deadline_at"] = later(at, "deadline_s")
    if "published" in names:
        values["published_at"] = at
    if "finished" in names:
        values["finished_at"] = at
    return values


# What the INSERT of an accepted task gives back: what the database drew or computed.
INSERTED = (TABLE.c.id, TABLE.c.seq, TABLE.c.created_at, TABLE.c.deadline_at)


@functools.cache
def insert_task(names: tuple[str, ...]) -> DriverStatement:
    """The INSERT of an accepted task with these columns (without `seq`, the database
    draws it), built once per set of columns.

    `at` stands for the acceptance time (`created_at`, `updated_at`; the database's unless
    given), `deadline_s` for a deadline that many seconds after it, `published` and
    `finished` for `published_at` and `finished_at` at that time.
    """
    return DriverStatement(insert(TABLE).values(accepted_columns(names)).returning(*INSERTED))


CLAIMED = (
    TABLE.c.task_name,
    TABLE.c.attempts,
    TABLE.c.retry_count,
    TABLE.c.payload,
    TABLE.c.sealed_secrets,
    TABLE.c.deadline_at,
    TABLE.c.checkpoint,
    TABLE.c.seq,
    TABLE.c.origin_task_id,
    TABLE.c.prior_keys,
    TABLE.c.updated_at,
    TABLE.c.lost_attempts,
    TABLE.c.customer_id,
)


def _claim(*, ordered: bool) -> DriverStatement:
    """A new attempt under a lease, for a row that may be taken now, and with `ordered`
    only while no earlier write it meets is unfinished. The lease ends by the database's
    clock."""
    at = clock("at")
    conditions = [TABLE.c.task_id == bindparam("claimed"), claimable(at)]
    if ordered:
        conditions.append(~earlier_unfinished())
    return DriverStatement(
        update(TABLE)
        .where(*conditions)
        .values(
            status=TaskStatus.PROCESSING,
            attempts=TABLE.c.attempts + 1,
            next_attempt_at=None,
            held=False,
            wait_reason=None,
            waiting_for=None,
            lease_until=later(at, "lease_s"),
            lease_owner=bindparam("owner"),
            updated_at=at,
            # A task still `processing` when claimed again had an attempt that died with its
            # worker (its lease ran out, nobody recorded it): counted, by task id.
            lost_attempts=case(
                (TABLE.c.status == TaskStatus.PROCESSING, TABLE.c.lost_attempts + 1),
                else_=TABLE.c.lost_attempts,
            ),
        )
        .returning(*CLAIMED)
    )


CLAIM = _claim(ordered=False)
CLAIM_ORDERED = _claim(ordered=True)


@functools.cache
def status_change(
    status: TaskStatus, *, guarded: bool, with_error: bool, with_reason: bool
) -> DriverStatement:
    """The statement of one kind of status change, built once per kind."""
    at = clock("at")
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
            result=bindparam("result", type_=TABLE.c.result.type),
            error_kind=None,
            failure_reason=None,
        )
    if with_error:
        values.update(error_message=bindparam("error"), error_kind=bindparam("error_kind"))
    if with_reason:
        values["failure_reason"] = bindparam("failure_reason")
    stmt = update(TABLE).where(TABLE.c.task_id == bindparam("changed"), UNFINISHED)
    if guarded:
        stmt = stmt.where(
            TABLE.c.status == TaskStatus.PROCESSING, TABLE.c.attempts == bindparam("attempt")
        )
    return DriverStatement(stmt.values(**values))


@functools.cache
def retrying(*, counted: bool) -> DriverStatement:
    """A failed attempt that will be retried (`counted`: as one more retry), due at the
    caller's `due` or `delay_s` after the database's now; held in the log (no broker
    message) with its reason, or not. Only while that attempt is the one running."""
    at = clock("at")
    values: dict[str, Any] = {
        "status": TaskStatus.RETRYING,
        "error_message": func.coalesce(bindparam("error", type_=Text()), TABLE.c.error_message),
        "error_kind": func.coalesce(bindparam("error_kind", type_=String()), TABLE.c.error_kind),
        "next_attempt_at": when("due", delay="delay_s"),
        "held": bindparam("held"),
        "wait_reason": bindparam("reason"),
        "lease_until": None,
        "updated_at": at,
    }
    if counted:
        values["retry_count"] = TABLE.c.retry_count + 1
    stmt = update(TABLE).where(
        TABLE.c.task_id == bindparam("changed"),
        TABLE.c.status == TaskStatus.PROCESSING,
        TABLE.c.attempts == bindparam("attempt"),
    )
    return DriverStatement(stmt.values(**values))
