"""The local services the tests, the chaos suite and the benchmarks share: loopback ports,
waiting for something to happen, and PostgreSQL databases of their own.

`TEST_POSTGRES_ADMIN_URL` names a server on which databases may be created and dropped
(default: the local one, as `tools/ensure-services.sh postgres` leaves it).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_until(
    predicate: Callable[[], Any],
    timeout_s: float,
    interval_s: float = 0.1,
    what: str = "condition",
) -> Any:
    """Poll `predicate` until it returns something truthy (returned); TimeoutError after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def admin_execute(*statements: str) -> None:
    """Run statements on the admin database, each on its own (CREATE/DROP DATABASE)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        admin.dispose()


def database_url(name: str) -> str:
    """The URL of database `name` on the admin URL's server."""
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def create_database(name: str, *, migrated: bool = True) -> str:
    """A fresh database (migrated to head unless told otherwise); its URL."""
    try:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    except Exception as exc:
        raise RuntimeError(
            f"PostgreSQL at {make_url(PG_ADMIN_URL).render_as_string()} is needed "
            f"(set TEST_POSTGRES_ADMIN_URL, or run tools/ensure-services.sh postgres): {exc}"
        ) from exc
    url = database_url(name)
    if migrated:
        from services.core.tasklog import migrate  # the settings of a run are set by now

        migrate.upgrade(url)
    return url


def drop_database(name: str) -> None:
    """Drop a database made by `create_database` (its connections are cut)."""
    admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
