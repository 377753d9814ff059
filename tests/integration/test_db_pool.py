"""The task log's connection pool: idle connections are checked before use, and a check
leaves nothing behind.

The pool pings a connection only when it sat idle longer than PING_IDLE_S (a ping per
checkout would be a round trip per statement). Here the threshold is zero, so every
checkout pings: a ping must not leave a transaction open (a single-statement session could
not switch the connection to autocommit then), and a connection the server cut must be
replaced, not handed to the caller. The hot statements that run on the driver directly
(db.DriverStatement) must fail as SQLAlchemy's errors do, and name no value of the row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from services.core import db
from services.core.tasklog import migrate
from services.core.tasklog.models import utcnow
from services.core.tasklog.repository import Refusal, TaskLogRepository
from tests.conftest import create_pg_database, drop_pg_database
from tools.localservices import PG_ADMIN_URL


@pytest.fixture
def repo_and_db() -> Iterator[tuple[TaskLogRepository, str]]:
    """A task log whose pool pings only idle connections (the default)."""
    name = f"durable_pool_{uuid.uuid4().hex[:8]}"
    url = create_pg_database(name)
    migrate.upgrade(url)
    yield TaskLogRepository(db.session_factory(url)), name
    db.dispose_engines(url)
    drop_pg_database(name)


@pytest.fixture
def pinged_repo(
    repo_and_db: tuple[TaskLogRepository, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[TaskLogRepository, str]:
    """A task log whose pool pings every connection it hands out."""
    monkeypatch.setattr(db, "PING_IDLE_S", 0.0)  # read at each checkout
    return repo_and_db


def _record(repo: TaskLogRepository, task_id: str) -> None:
    now = utcnow()
    repo.create(
        task_id=task_id,
        task_name="canary_es",
        queue="es",
        payload={},
        deadline_at=now + timedelta(hours=1),
        now=now,
    )


def _cut(name: str) -> int:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        cut = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :d"
            ),
            {"d": name},
        ).scalar()
    admin.dispose()
    return int(cut or 0)


def test_a_ping_leaves_no_transaction_open(pinged_repo: tuple[TaskLogRepository, str]) -> None:
    repo, _ = pinged_repo
    # Single statements (autocommit) and transactions, in turn, on pinged connections.
    for i in range(5):
        _record(repo, f"t{i}")
        row = repo.get_by_task_id(f"t{i}")
        assert row is not None and row.status == "pending"
        assert not isinstance(repo.claim(f"t{i}", owner="test"), Refusal)


def test_a_connection_the_server_cut_is_replaced(
    pinged_repo: tuple[TaskLogRepository, str],
) -> None:
    repo, name = pinged_repo
    _record(repo, "before")
    assert _cut(name) >= 1  # the pool's idle connection was cut
    _record(repo, "after")
    assert repo.get_by_task_id("after") is not None


def test_a_driver_statement_on_a_cut_connection_fails_as_sqlalchemy_and_the_next_works(
    repo_and_db: tuple[TaskLogRepository, str],
) -> None:
    # The hot statements run on the driver past SQLAlchemy's execution; a dead connection
    # must still come out as SQLAlchemy's error (callers answer 503 or put the attempt off
    # on it) and be dropped from the pool, not handed out again.
    repo, name = repo_and_db
    _record(repo, "before")  # a connection is in the pool, used a moment ago: no ping
    assert _cut(name) >= 1
    with pytest.raises(OperationalError) as failed:
        repo.claim("before", owner="test")
    assert failed.value.connection_invalidated
    assert not isinstance(repo.claim("before", owner="test"), Refusal)


def test_a_driver_statement_refusing_a_duplicate_is_an_integrity_error_without_values(
    repo_and_db: tuple[TaskLogRepository, str],
) -> None:
    repo, _ = repo_and_db
    now = utcnow()
    for attempt in range(2):
        try:
            repo.create(
                task_id="same",
                task_name="canary_es",
                queue="es",
                payload={"note": "payload-value"},
                sealed_secrets="sealed-value",
                deadline_at=now + timedelta(hours=1),
                now=now,
            )
        except IntegrityError as exc:
            assert attempt == 1
            # What a log line or an error answer could carry names no value of the row.
            assert "payload-value" not in str(exc) and "sealed-value" not in str(exc)
        else:
            assert attempt == 0
