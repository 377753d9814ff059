"""The transactional outbox: a caller's own change and its downstream write commit together.

A caller passes its SQLAlchemy Session, Connection, AsyncSession or AsyncConnection; the
task-log row (and what acceptance records with it: caller versions, the idempotency key,
sealed secrets) is written inside the caller's transaction, numbered in acceptance order
when that transaction commits (migration 0010), and published once it committed
(`publisher`). A rollback leaves nothing and publishes nothing. README, "Writes inside your
own transaction".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from services.core.enqueue import AcceptOptions, Enqueued, Enqueuer
from services.core.outbox.binding import CallerTransaction, NotATransaction, joined, run_in
from services.core.outbox.check import NoTaskLog, TaskLogCheck
from services.core.outbox.publisher import Publisher, publish_after_commit

__all__ = ["CallerTransaction", "NoTaskLog", "NotATransaction", "Outbox"]


class Outbox:
    """Accepts tasks inside callers' transactions (see the module doc)."""

    def __init__(self, enqueuer: Enqueuer, sessions: sessionmaker[Session], schema: str) -> None:
        self._enqueuer = enqueuer
        self._schema = schema
        self._check = TaskLogCheck(sessions, schema)
        self._publisher = Publisher(enqueuer, sessions)

    async def enqueue(
        self,
        caller: CallerTransaction,
        task_name: str,
        payload: Mapping[str, Any],
        **options: Unpack[AcceptOptions],
    ) -> Enqueued:
        """Record the task in the caller's transaction; it is published once that commits."""

        def accept(connection: Connection) -> Enqueued:
            self._check(connection)
            with joined(connection, self._schema) as session:
                accepted = self._enqueuer.accept_in(session, task_name, payload, **options)
            if not accepted.replayed:
                publish_after_commit(connection, self._publisher, accepted.task_id)
            return accepted

        return await run_in(caller, accept)
