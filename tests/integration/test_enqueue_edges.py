"""Edges of accepting a write that must not turn it into an error or a duplicate.

Once the task-log row is committed the write is accepted: whatever bookkeeping follows may
fail without the caller getting an error (a client resending without a key would then write
twice). A PostgreSQL trigger refuses every later change to the row's publish note, so a test
sees what the API answers when that bookkeeping fails.
"""

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
from tests.support.procs import free_port
from tests.support.server import parked, running_api

MARK = "refuse-bookkeeping"


@pytest.fixture
def bookkeeping_refused() -> Iterator[None]:
    """A PostgreSQL trigger that refuses to change the publish note of rows carrying MARK."""
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


def _upsert(api: httpx.Client) -> httpx.Response:
    customer = f"edge-{uuid.uuid4().hex[:8]}"
    return api.put("/api/v1/products/p1", json={"customer_id": customer, "data": {"name": MARK}})


def test_a_published_write_is_accepted_without_any_bookkeeping_after_the_publish(
    bookkeeping_refused: None, pg_repo: TaskLogRepository, redis: Redis, edges: Settings
) -> None:
    with running_api(edges) as api:
        answer = _upsert(api)
    # The row (noted as published in the same commit) and the message exist.
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]
    row = pg_repo.get_by_task_id(task_id)
    assert row is not None and row.status == "pending" and row.published_at is not None
    queued: list[str] = redis.lrange(f"{edges.redis_key_prefix}es", 0, -1)  # type: ignore[assignment]
    assert any(task_id in message for message in queued)


def test_a_write_whose_publish_failed_is_accepted_even_if_noting_it_fails(
    bookkeeping_refused: None, pg_repo: TaskLogRepository, edges: Settings
) -> None:
    # No broker (a closed port): the publish fails, then the trigger refuses taking the
    # publish note back. The row is committed: accepted, for the reconciler to publish.
    no_broker = edges.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "publish_max_retries": 0}
    )
    with running_api(no_broker) as api:
        answer = _upsert(api)
    assert answer.status_code == 202, answer.text
    row = pg_repo.get_by_task_id(answer.json()["task_id"])
    assert row is not None and row.status == "pending"
