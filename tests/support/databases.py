"""Task-log databases of their own, for stacks that must not see each other's tasks.

A scheduler releases and reconciles every task of its task log, whatever Redis prefix the
task was published under: two stacks on one database would run each other's tasks. Each
bench and stack of the tests therefore gets a fresh, migrated database of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from services.core.db import dispose_engines
from services.core.tasklog import migrate
from tests.conftest import create_pg_database, drop_pg_database


@contextmanager
def own_database(hint: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL task log; its URL. Dropped on exit."""
    name = f"durable_{hint}_{uuid.uuid4().hex[:8]}"
    url = create_pg_database(name)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        dispose_engines(url)
        drop_pg_database(name)
