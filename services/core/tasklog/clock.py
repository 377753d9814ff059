"""One clock for the task log: the database's.

Leases, holds, wake-ups, deadlines and the reconciler's cut-offs compare times written by
one process with times read by another. Machines' clocks drift apart (a worker 151 s ahead
once took a lease that was still live), so every such time is the database's `now()` plus a
duration, computed in the statement that writes it; no process clock enters them. A caller
may still give a time of its own (`at`), which tests use to play a later moment.

On SQLite (development, one machine) "the database's clock" is SQLite's `'now'`, written in
the text form SQLAlchemy stores times in, so that times compare as they do on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, bindparam, cast, func
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from services.core.tasklog.models import UTCDateTime

# SQLAlchemy stores times on SQLite as 'YYYY-MM-DD HH:MM:SS.ffffff'; SQLite's %f has three
# decimals, so three zeros complete the microseconds.
_SQLITE_FORMAT = "'%Y-%m-%d %H:%M:%f000'"


class db_now(FunctionElement[datetime]):
    """The database's current time (PostgreSQL: `now()`, the statement's transaction time)."""

    type = UTCDateTime()
    inherit_cache = True


class seconds_after(FunctionElement[datetime]):
    """`time` plus `seconds` (a number, possibly negative), computed by the database."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(db_now, "postgresql")
def _now_postgresql(_element: db_now, _compiler: SQLCompiler, **_kw: Any) -> str:
    return "now()"


@compiles(db_now, "sqlite")
def _now_sqlite(_element: db_now, _compiler: SQLCompiler, **_kw: Any) -> str:
    return f"strftime({_SQLITE_FORMAT}, 'now')"


@compiles(seconds_after, "postgresql")
def _after_postgresql(element: seconds_after, compiler: SQLCompiler, **kw: Any) -> str:
    time, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"({time} + make_interval(secs => {seconds}))"


@compiles(seconds_after, "sqlite")
def _after_sqlite(element: seconds_after, compiler: SQLCompiler, **kw: Any) -> str:
    time, seconds = (compiler.process(c, **kw) for c in element.clauses)
    return f"strftime({_SQLITE_FORMAT}, {time}, printf('%+.6f seconds', {seconds}))"


def clock(name: str = "at") -> ColumnElement[datetime]:
    """The time a statement works at: the caller's `name` parameter if given, else the
    database's now."""
    return func.coalesce(bindparam(name, type_=UTCDateTime()), db_now(), type_=UTCDateTime())


def later(time: ColumnElement[datetime], name: str) -> ColumnElement[datetime]:
    """`time` plus the seconds given as parameter `name`."""
    return seconds_after(time, cast(bindparam(name), Float()))


def when(name: str, *, delay: str) -> ColumnElement[datetime]:
    """The caller's time `name` if given, else the seconds `delay` after the statement's
    clock (`clock`)."""
    return func.coalesce(
        bindparam(name, type_=UTCDateTime()), later(clock("at"), delay), type_=UTCDateTime()
    )
