"""Per-process wiring of the catalog writer: one ES client, one event loop, one of each."""

from __future__ import annotations

import asyncio
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
        """Run a coroutine to completion on this process's loop."""
        return self.loop.run_until_complete(coro)


@per_process
def worker_runtime() -> WorkerRuntime:
    """The runtime of this process, built on first use (after the pool fork)."""
    return WorkerRuntime(get_settings())
