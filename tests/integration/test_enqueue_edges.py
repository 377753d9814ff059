"""Edges of accepting a write that must not turn it into an error or a duplicate."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from redis import Redis
from sqlalchemy import create_engine, text

from services.core.config import Settings
from services.core.tasklog.repository import TaskLogRepository
from tests.conftest import PG_URL
from tests.support.server import parked, running_api

MARK = "refuse-bookkeeping"


@pytest.fixture
def bookkeeping_refused() -> Iterator[None]:
    """A PostgreSQL trigger that refuses to note a publish of rows carrying MARK."""
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse_published_note() RETURNS trigger AS $$ BEGIN "
                "IF NEW.published_at IS DISTINCT FROM OLD.published_at "
                f"AND NEW.payload::text LIKE '%{MARK}%' THEN "
                "RAISE EXCEPTION 'injected: the note of the publish is refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_published_note BEFORE UPDATE ON task_log "
                "FOR EACH ROW EXECUTE FUNCTION refuse_published_note()"
            )
        )
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse_published_note ON task_log"))
            conn.execute(text("DROP FUNCTION refuse_published_note()"))
        engine.dispose()


@pytest.fixture
def edges(settings: Settings) -> Settings:
    """Settings whose queues no worker reads, so the message stays where it was put."""
    return parked(settings, "edges")


@pytest.fixture
def api(edges: Settings) -> Iterator[httpx.Client]:
    with running_api(edges) as client:
        yield client


def test_a_published_write_whose_note_fails_is_still_accepted(
    bookkeeping_refused: None,
    api: httpx.Client,
    pg_repo: TaskLogRepository,
    redis: Redis,
    edges: Settings,
) -> None:
    customer = f"edge-{uuid.uuid4().hex[:8]}"
    answer = api.put("/api/v1/products/p1", json={"customer_id": customer, "data": {"name": MARK}})
    # The row and the message exist: the write is accepted, whatever the bookkeeping says.
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]
    row = pg_repo.get_by_task_id(task_id)
    assert row is not None and row.status == "pending" and row.published_at is None
    queued: list[str] = redis.lrange(f"{edges.redis_key_prefix}es", 0, -1)  # type: ignore[assignment]
    assert any(task_id in message for message in queued)
