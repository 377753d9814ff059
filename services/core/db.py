"""Database engines and sessions, one engine per process and URL.

Every PostgreSQL connection runs READ COMMITTED, set on the session when it is opened: the
task log's guarded transitions are written for it (a write that waited for a lock sees the
row as the other transaction left it; the second statement of a transaction sees what
committed before it), and a server's `default_transaction_isolation` may say otherwise
(`repeatable read` is a common setting). A statement or transaction refused for a
serialization failure or a deadlock is run again, a few times, instead of failing its task.
"""

from __future__ import annotations

import os
import random
import time
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg
from psycopg import errors as pg_errors
from sqlalchemy import (
    URL,
    ClauseElement,
    CursorResult,
    Dialect,
    Engine,
    Executable,
    Result,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.exc import DBAPIError, DisconnectionError, NoResultFound, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler

T = TypeVar("T")
_engines: dict[tuple[int, str], Engine] = {}
# A pooled connection idle longer than this is pinged before use.
PING_IDLE_S = 10.0
# Runs of a statement or transaction refused for a serialization failure or a deadlock.
CONFLICT_ATTEMPTS = 5
_CONFLICTS = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers and one writer work at once; busy_timeout makes a second writer wait
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _pool_options() -> dict[str, Any]:
    from services.core.config import get_settings

    settings = get_settings()
    # Room for every thread that may need a connection at once (the API's request threads;
    # a worker's pool process needs one or two), so requests do not queue for connections.
    return {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_max_overflow,
    }


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dialect: Dialect) -> Callable[[Any, Any, Any], None]:
    """A checkout hook: pessimistic disconnect handling, for idle connections only.

    A ping on every checkout (pool_pre_ping) is a round trip per transaction, a large share
    of a short one. A connection busy a moment ago is alive; one idle for long may have been
    cut (a restarted server, a proxy's idle timeout). A failed ping makes the pool drop the
    connection and take another (DisconnectionError), as pool_pre_ping would. The dialect's
    own ping leaves no transaction open behind it.
    """

    def ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_S:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("connection found dead when taken from the pool") from exc
        if not alive:
            raise DisconnectionError("connection found dead when taken from the pool")

    return ping


def _tasklog_schema() -> str:
    from services.core.config import get_settings

    return get_settings().tasklog_schema


def _search_path(schema: str) -> Callable[[Any, Any], None]:
    """A connect hook: every connection of the engine finds the task log in `schema`.

    Set once per connection, in autocommit so that no transaction is left open behind it
    (SQLAlchemy's documented recipe for an alternate search path).
    """

    def set_path(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f'SET SESSION search_path TO "{schema}"')
        dbapi_connection.autocommit = autocommit

    return set_path


def _read_committed(dbapi_connection: Any, _record: Any) -> None:
    # On the session, so that it holds in autocommit mode too (each statement is then its own
    # transaction at the session's level), whatever the server's default says.
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"
            )
    finally:
        dbapi_connection.autocommit = autocommit


def _postgresql_engine(url: URL, **options: Any) -> Engine:
    engine = create_engine(url, **_pool_options(), **options)
    schema = _tasklog_schema()
    if schema:
        # insert=True: before SQLAlchemy's own first-connect queries.
        event.listen(engine, "connect", _search_path(schema), insert=True)
    event.listen(engine, "connect", _read_committed)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle(engine.dialect))
    return engine


def get_engine(url: str) -> Engine:
    """The engine of this process for `url`.

    Keyed by pid: a prefork worker child must not reuse the connection pool of the parent it
    was forked from, or two processes would talk over one socket. Its connections find the
    task log in TASKLOG_SCHEMA when that is set.
    """
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        if url.startswith("sqlite"):
            ensure_sqlite_dir(url)
            engine = create_engine(url, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = _postgresql_engine(make_url(url))
        _engines[key] = engine
    return engine


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite file URL (a fresh clone has no var/ yet)."""
    if not url.startswith("sqlite"):
        return
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def session_factory(url: str) -> sessionmaker[Session]:
    """Sessions bound to the engine of `url`."""
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on error."""
    with factory() as session, session.begin():
        yield session


def is_conflict(exc: BaseException) -> bool:
    """Whether a database error is a serialization failure or a deadlock (worth a rerun)."""
    return isinstance(getattr(exc, "orig", exc), _CONFLICTS)


def _pause(attempt: int) -> None:
    # Short and jittered, so that the transactions that collided do not collide again.
    time.sleep(random.uniform(0, 0.01 * 2**attempt))


def run_transaction(factory: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """Run `work` in one transaction; rerun it if the database refused it for a serialization
    failure or a deadlock (its effects were rolled back), up to CONFLICT_ATTEMPTS runs."""
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            with transaction(factory) as session:
                return work(session)
        except OperationalError as exc:
            if not is_conflict(exc) or attempt == CONFLICT_ATTEMPTS - 1:
                raise
            _pause(attempt)
    raise AssertionError("unreachable")  # pragma: no cover


_autocommit_engines: dict[Engine, Engine] = {}


def _autocommit(factory: sessionmaker[Session]) -> Engine:
    bind: Engine = factory.kw["bind"]
    engine = _autocommit_engines.get(bind)
    if engine is None:
        if bind.dialect.name == "postgresql":
            # A pool of its own whose connections stay in autocommit: switching a shared
            # connection in and out of it costs work on every checkout and checkin.
            engine = _postgresql_engine(bind.url, isolation_level="AUTOCOMMIT")
        else:
            engine = bind.execution_options(isolation_level="AUTOCOMMIT")
        _autocommit_engines[bind] = engine
    return engine


@contextmanager
def single_statement(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for work that is one statement (or reads): each statement commits on its own.

    A transaction costs three round trips to PostgreSQL (BEGIN, the statement, COMMIT); a
    statement in autocommit mode costs one. The hot paths of the task log (a claim, an
    outcome, a read) are single statements, atomic by themselves.
    """
    with Session(bind=_autocommit(factory), expire_on_commit=False) as session:
        yield session


@dataclass(frozen=True)
class DriverResult:
    """What a driver statement gave: its rows (attribute access by column), rows matched."""

    rows: list[Any]
    rowcount: int

    def one(self) -> Any:
        """The one row (a RETURNING statement that must match exactly one row)."""
        if len(self.rows) != 1:
            raise NoResultFound(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def one_or_none(self) -> Any:
        """The row, or None when none matched."""
        return self.rows[0] if self.rows else None


@dataclass(frozen=True)
class _Plan:
    """A statement compiled for one dialect, with the processing of its values."""

    sql: str
    fixed: dict[str, Any]  # the statement's own values (literals), processed
    processors: dict[str, Callable[[Any], Any]]  # for the caller's values, by name
    row: Callable[..., Any]  # a namedtuple of the result's columns
    results: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect) -> _Plan:
        compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=dialect))
        fixed: dict[str, Any] = {}
        processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                if process is not None:
                    processors[name] = process
            else:
                value = bind.effective_value
                fixed[name] = process(value) if process is not None else value
        columns = list(getattr(statement, "exported_columns", ()))
        return cls(
            sql=compiled.string,
            fixed=fixed,
            processors=processors,
            row=namedtuple("Row", [c.key for c in columns], rename=True),
            results=tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
            ),
        )

    def params(self, given: dict[str, Any]) -> dict[str, Any]:
        values = dict(self.fixed)
        for name, value in given.items():
            process = self.processors.get(name)
            values[name] = process(value) if process is not None else value
        return values

    def rows(self, raw: list[tuple[Any, ...]]) -> list[Any]:
        if not any(self.results):
            return [self.row(*r) for r in raw]
        return [
            self.row(*(v if p is None else p(v) for p, v in zip(self.results, r, strict=True)))
            for r in raw
        ]


class DriverStatement:
    """A hot single statement, compiled once and run on PostgreSQL's driver directly.

    SQLAlchemy's execution machinery (an execution context, parameter and result processing
    per call) costs about 0.3 ms a statement on the benchmark machine, near half the time of
    a one-row UPDATE (README, "Performance"). The statement is still written with SQLAlchemy
    and compiled by it, once; its values go through the same type processors, and driver
    errors come out as SQLAlchemy's exceptions (IntegrityError, OperationalError, ...), with
    a connection found dead dropped from the pool. Each run commits on its own (autocommit).
    Other databases (SQLite, in development) run it through SQLAlchemy.
    """

    def __init__(self, statement: Executable, *, elsewhere: Executable | None = None) -> None:
        self.statement = statement
        # The same statement for databases that lack what `statement` uses (arrays, say).
        self.elsewhere = statement if elsewhere is None else elsewhere
        self._plans: dict[str, _Plan] = {}

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            plan = self._plans[dialect.name] = _Plan.compile(self.statement, dialect)
        return plan

    def run(self, factory: sessionmaker[Session], params: dict[str, Any]) -> DriverResult:
        """Run the statement with `params` (extra names are ignored); rerun when refused for
        a serialization failure or a deadlock."""
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                return self._run(factory, params)
            except OperationalError as exc:
                if not is_conflict(exc) or attempt == CONFLICT_ATTEMPTS - 1:
                    raise
                _pause(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, factory: sessionmaker[Session], params: dict[str, Any]) -> DriverResult:
        engine = _autocommit(factory)
        if engine.dialect.name != "postgresql":
            with engine.connect() as connection:
                result = connection.execute(self.elsewhere, params)
                rows = list(result.all()) if result.returns_rows else []
                return DriverResult(rows, rowcount(result))
        plan = self._plan(engine.dialect)
        pooled = engine.raw_connection()
        try:
            driver = cast(psycopg.Connection[Any], pooled.driver_connection)
            with driver.cursor() as cursor:
                cursor.execute(plan.sql, plan.params(params))
                rows = plan.rows(cursor.fetchall()) if cursor.description else []
                return DriverResult(rows, cursor.rowcount)
        except psycopg.Error as exc:
            dbapi = pooled.dbapi_connection
            dead = engine.dialect.is_disconnect(exc, dbapi, None)  # type: ignore[arg-type]
            if dead:
                pooled.invalidate(exc)
            raise DBAPIError.instance(
                plan.sql,
                None,
                exc,
                psycopg.Error,
                hide_parameters=True,
                dialect=engine.dialect,
                connection_invalidated=dead,
            ) from exc
        finally:
            pooled.close()


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (they give a CursorResult, which knows)."""
    return cast(CursorResult[Any], result).rowcount


def dispose_engines(url: str) -> None:
    """Close this process's pooled connections to `url` (before dropping its database)."""
    for key in [k for k in _engines if k[1] == url]:
        engine = _engines.pop(key)
        autocommit = _autocommit_engines.pop(engine, None)
        if autocommit is not None and autocommit is not engine:
            autocommit.dispose()
        engine.dispose()
