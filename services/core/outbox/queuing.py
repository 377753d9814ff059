"""How code (not the API) queues a write: recorded and published now, or inside the caller's
transaction and published once it commits. Shared by the catalog facade and the
ChatbotMobile entry points."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

from services.core.config import Settings
from services.core.db import session_factory
from services.core.enqueue import AcceptOptions, Enqueued, Enqueuer, request_hash
from services.core.outbox import Outbox
from services.core.outbox.binding import CallerTransaction
from services.core.tasklog.repository import TaskLogRepository


class QueueOptions(TypedDict, total=False):
    """What every function that queues a write for code takes, besides the write."""

    # Recorded in the task log (the caller's own tasks).
    user_id: str | None
    # A repeat of the same write with the key returns the first task.
    idempotency_key: str | None
    # The caller's transaction: the task is recorded in it and published once it commits.
    session: CallerTransaction | None


class Queuing:
    """Queues writes for code that calls our functions (see the module doc)."""

    def __init__(self, settings: Settings, enqueuer: Enqueuer | None = None) -> None:
        self._settings = settings
        self._enqueuer = enqueuer
        self._outbox: Outbox | None = None

    def enqueuer(self) -> Enqueuer:
        """The enqueue path, built on first use."""
        if self._enqueuer is None:
            # It writes the task log and seals secrets (ROLE_SECRETS).
            self._settings.require("DATABASE_URL", "SECRETS_KEY")
            repo = TaskLogRepository(session_factory(self._settings.database_url))
            # The global app is built by importing its module: only once a write is enqueued.
            from services.core.celery_app import app as celery_app

            self._enqueuer = Enqueuer(repo=repo, celery=celery_app, settings=self._settings)
        return self._enqueuer

    def outbox(self) -> Outbox:
        """Acceptance inside a caller's transaction, built on first use."""
        if self._outbox is None:
            sessions = session_factory(self._settings.database_url)
            self._outbox = Outbox(self.enqueuer(), sessions, self._settings.tasklog_schema)
        return self._outbox

    async def queue(
        self,
        task_name: str,
        payload: Mapping[str, Any],
        *,
        secrets: Mapping[str, str] | None = None,
        task_id: str | None = None,
        **options: Unpack[QueueOptions],
    ) -> Enqueued:
        """Queue a write of the customer `payload["customer_id"]`.

        With `session`, inside the caller's transaction (published once it commits);
        without, at once. A repeat of `idempotency_key` for the same write returns the
        first task (IdempotencyConflict for another write).
        """
        key = options.get("idempotency_key")
        accept = AcceptOptions(
            user_id=options.get("user_id"),
            customer_id=payload["customer_id"],
            secrets=secrets,
            idempotency_key=key,
            request_hash=request_hash(task_name, payload) if key else None,
            task_id=task_id,
        )
        session = options.get("session")
        if session is not None:
            return await self.outbox().enqueue(session, task_name, payload, **accept)
        return await asyncio.to_thread(self.enqueuer().enqueue, task_name, payload, **accept)
