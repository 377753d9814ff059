"""Per-process wiring of the catalog writer: one ES client, one event loop, one of each."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from services.core.config import Settings, get_settings
from services.core.db import session_factory
from services.core.perprocess import per_process
from services.core.search.client import make_client
from services.core.search.embeddings import make_provider
from services.core.search.indices import IndexManager
from services.core.search.tombstones import DeleteMemory
from services.core.search.writer import CatalogWriter

T = TypeVar("T")


def make_writer(settings: Settings) -> CatalogWriter:
    """A writer with its own client; use it from one event loop only."""
    client = make_client(settings)
    embeddings = make_provider(settings)
    return CatalogWriter(
        client=client,
        indices=IndexManager(client, settings.es_index_prefix, embeddings.dimensions),
        deletes=DeleteMemory(session_factory(settings.database_url)),
        embeddings=embeddings,
        embed_fields=settings.embedding_fields,
        settle_s=settings.elasticsearch_request_timeout_s,
    )


class WorkerRuntime:
    """A worker process's event loop and writer, reused by every task it runs.

    Prefork pool processes run tasks synchronously; one long-lived loop per process keeps the
    client's connection pool alive between tasks instead of opening one per task.
    """

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.writer = make_writer(settings)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine to completion on this process's loop.

        Cut short (the soft time limit's exception arrives in the loop), it is cancelled
        before the exception goes on: left pending, it would resume inside the next task
        run on this loop and write outside any attempt.
        """
        task = self.loop.create_task(coro)
        try:
            return self.loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    self.loop.run_until_complete(task)
            raise


@per_process
def worker_runtime() -> WorkerRuntime:
    """The runtime of this process, built on first use (after the pool fork)."""
    return WorkerRuntime(get_settings())
