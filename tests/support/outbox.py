"""A caller of the outbox: an application's own transaction, of each kind SQLAlchemy offers.

The caller keeps a table of its own (`caller_products`) and changes it in the same
transaction that records its writes, as the README's example does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    create_async_engine,
)
from sqlalchemy.orm import Session

from services.core.outbox import CallerTransaction
from tests.support.procs import wait_until

T = TypeVar("T")
KINDS = ("session", "connection", "async_session", "async_connection")
CALLER_TABLE = text(
    "CREATE TABLE IF NOT EXISTS caller_products (id text PRIMARY KEY, name text NOT NULL)"
)
SET_NAME = text(
    "INSERT INTO caller_products (id, name) VALUES (:id, :name) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name"
)


class Callers:
    """Engines of one database, sync and async, and the event loop the async ones live on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = asyncio.Runner()
        self.sync: Engine = create_engine(url, pool_size=8)
        self.async_: AsyncEngine = self.runner.run(_async_engine(url))
        with self.sync.begin() as connection:
            connection.execute(CALLER_TABLE)

    def open(self, kind: str) -> Caller:
        """A new transaction of `kind` (one of KINDS)."""
        return Caller(self, kind)

    def name_of(self, product_id: str) -> str | None:
        """The caller's own committed name of a product."""
        with self.sync.connect() as connection:
            found = connection.execute(
                text("SELECT name FROM caller_products WHERE id = :id"), {"id": product_id}
            ).scalar()
        return str(found) if found is not None else None

    def close(self) -> None:
        """Dispose of both engines and the loop."""
        self.runner.run(self.async_.dispose())
        self.runner.close()
        self.sync.dispose()


async def _async_engine(url: str) -> AsyncEngine:
    return create_async_engine(url, pool_size=8)


@contextmanager
def callers(url: str) -> Iterator[Callers]:
    """`Callers` of the database at `url`, closed on exit."""
    made = Callers(url)
    try:
        yield made
    finally:
        made.close()


class Caller:
    """One transaction of a caller, driven step by step (async kinds on the shared loop)."""

    def __init__(self, callers: Callers, kind: str) -> None:
        self.kind = kind
        self._run = callers.runner.run
        self.handle: CallerTransaction
        if kind == "session":
            self.handle = Session(callers.sync)
        elif kind == "connection":
            self.handle = callers.sync.connect()
        elif kind == "async_session":
            self.handle = AsyncSession(callers.async_)
        elif kind == "async_connection":
            self.handle = self._run(_async_connect(callers.async_))
        else:
            raise ValueError(kind)

    def write(self, call: Callable[[CallerTransaction], Coroutine[Any, Any, T]]) -> T:
        """Run one of our async entry points with this transaction as `session`."""
        return self._run(call(self.handle))

    def set_name(self, product_id: str, name: str) -> None:
        """The caller's own change, in the same transaction."""
        self._execute(SET_NAME, {"id": product_id, "name": name})

    def execute(self, sql: str, **params: Any) -> None:
        """Any statement of the caller's, in its transaction."""
        self._execute(text(sql), params)

    def _execute(self, statement: Any, params: dict[str, Any]) -> None:
        handle = self.handle
        if isinstance(handle, Session | Connection):
            handle.execute(statement, params)
        else:
            self._run(_async_execute(handle, statement, params))

    def commit(self) -> None:
        """COMMIT, then give the connection back."""
        self._end("commit")

    def rollback(self) -> None:
        """ROLLBACK, then give the connection back."""
        self._end("rollback")

    def _end(self, how: str) -> None:
        handle = self.handle
        if isinstance(handle, Session | Connection):
            getattr(handle, how)()
            handle.close()
        else:
            self._run(_async_end(handle, how))


async def _async_connect(engine: AsyncEngine) -> AsyncConnection:
    return await engine.connect()


async def _async_execute(
    handle: AsyncSession | AsyncConnection, statement: Any, params: dict[str, Any]
) -> None:
    await handle.execute(statement, params)


async def _async_end(handle: AsyncSession | AsyncConnection, how: str) -> None:
    await getattr(handle, how)()
    await handle.close()


def backend_pid(caller: Caller) -> int:
    """The PostgreSQL backend of a caller's (sync) transaction."""
    handle = caller.handle
    assert isinstance(handle, Session | Connection)
    return int(handle.execute(text("SELECT pg_backend_pid()")).scalar_one())


def advisory_locks(callers: Callers, pid: int, lock_space: int, *, granted: bool) -> int:
    """Advisory locks whose first key is `lock_space` that backend `pid` holds (or waits for)."""
    with callers.sync.connect() as connection:
        found = connection.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE pid = :pid AND granted = :granted "
                "AND locktype = 'advisory' AND classid = :space"
            ),
            {"pid": pid, "space": lock_space, "granted": granted},
        ).scalar_one()
    return int(found)


def waits_on(callers: Callers, pid: int, lock_space: int) -> bool:
    """Whether backend `pid` waits for an advisory lock whose first key is `lock_space`."""
    return advisory_locks(callers, pid, lock_space, granted=False) > 0


class Gate:
    """A deferred trigger of the caller's that holds up the commit of any transaction that
    inserted into `caller_gate`, until the gate opens (on leaving the `with` block): a way to
    hold a transaction inside its COMMIT, after our own commit-time work, and watch."""

    KEY = 4242

    def __init__(self, callers: Callers) -> None:
        self._callers = callers
        with callers.sync.begin() as setup:
            setup.execute(text("CREATE TABLE IF NOT EXISTS caller_gate (id int)"))
            setup.execute(
                text(
                    "CREATE OR REPLACE FUNCTION caller_gate_wait() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ BEGIN "
                    f"PERFORM pg_advisory_xact_lock({self.KEY}, 1); RETURN NULL; END $$"
                )
            )
            setup.execute(text("DROP TRIGGER IF EXISTS caller_gate_wait ON caller_gate"))
            setup.execute(
                text(
                    "CREATE CONSTRAINT TRIGGER caller_gate_wait AFTER INSERT ON caller_gate "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                    "EXECUTE FUNCTION caller_gate_wait()"
                )
            )
        self._holder = callers.sync.connect()

    def __enter__(self) -> Gate:
        self._holder.execute(text(f"SELECT pg_advisory_lock({self.KEY}, 1)"))  # closed
        return self

    def wait_stalled(self, pid: int) -> None:
        """Until backend `pid` waits at the gate."""
        wait_until(lambda: waits_on(self._callers, pid, self.KEY), 10, what="a commit to stall")

    def __exit__(self, *_: object) -> None:
        self._holder.execute(text(f"SELECT pg_advisory_unlock({self.KEY}, 1)"))
        self._holder.close()
