"""Working through a caller's own transaction: its Session, Connection or their async kinds.

Whatever the caller gives, the work runs on the one `Connection` of its current transaction,
through a Session of ours joined to it (`join_transaction_mode="rollback_only"`: our session
never commits, and closing it leaves the caller's transaction as it was). With a task-log
schema (TASKLOG_SCHEMA), every statement of that session names the schema: the caller's
connection keeps its own search path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeAlias, TypeVar

from sqlalchemy import Connection, event
from sqlalchemy.orm import ORMExecuteState, Session

if TYPE_CHECKING:
    # Imported when used: SQLAlchemy's asyncio extension needs greenlet, which only a
    # caller with async sessions (hence with greenlet) needs.
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

# What a caller may pass as its transaction.
CallerTransaction: TypeAlias = "Session | Connection | AsyncSession | AsyncConnection"
T = TypeVar("T")


class NotATransaction(ValueError):
    """The caller's connection commits every statement on its own (autocommit)."""


async def run_in(caller: CallerTransaction, work: Callable[[Connection], T]) -> T:
    """Run `work` on the connection of the caller's transaction, beginning it if needed.

    Async kinds run it on their event loop (SQLAlchemy's greenlet bridge); sync kinds in a
    thread, as the facade does with its other blocking work.
    """
    if isinstance(caller, Session):
        return await asyncio.to_thread(lambda: work(_in_transaction(caller.connection())))
    if isinstance(caller, Connection):
        return await asyncio.to_thread(lambda: work(_in_transaction(caller)))
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    if isinstance(caller, AsyncSession):
        connection = await caller.connection()
        return await connection.run_sync(lambda sync: work(_in_transaction(sync)))
    if isinstance(caller, AsyncConnection):
        return await caller.run_sync(lambda sync: work(_in_transaction(sync)))
    raise TypeError(
        "session must be a SQLAlchemy Session, Connection, AsyncSession or AsyncConnection, "
        f"not {type(caller).__name__}"
    )


def _in_transaction(connection: Connection) -> Connection:
    if connection._is_autocommit_isolation():
        raise NotATransaction(
            "the given connection is in AUTOCOMMIT mode: a write can join a transaction only "
            "if there is one"
        )
    if not connection.in_transaction():
        # Begun here, it is still the caller's: its commit() or rollback() ends it.
        connection.begin()
    return connection


@contextmanager
def joined(connection: Connection, schema: str) -> Iterator[Session]:
    """A session of ours inside the transaction of `connection` (see the module doc)."""
    session = Session(bind=connection, join_transaction_mode="rollback_only")
    if schema:
        translate = {None: schema}

        def in_schema(state: ORMExecuteState) -> None:
            state.update_execution_options(schema_translate_map=translate)

        event.listen(session, "do_orm_execute", in_schema)
    try:
        yield session
    finally:
        session.close()
