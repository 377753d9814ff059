"""The API's health endpoints and its enqueue path, over HTTP, with real Redis and workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from services.core.config import Settings
from services.core.db import get_engine
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import wait_finished
from tests.support.procs import RedisServer, Worker, free_port
from tests.support.server import running_api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    logs = tmp_path_factory.mktemp("logs")
    started = [
        Worker("services.es_worker", "es", logs, include="", concurrency=1).start(),
        Worker("services.http_worker", "http", logs, include="", concurrency=1).start(),
    ]
    yield started
    for worker in started:
        worker.stop()


def test_live_answers_without_dependencies(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with running_api(dead) as api:
        assert api.get("/health/live").json() == {"status": "ok"}


def test_ready_says_503_with_the_reason_when_redis_stops(
    settings: Settings, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        with running_api(settings.model_copy(update={"redis_url": redis.url})) as api:
            assert api.get("/health/ready").json() == {"status": "ok"}
            redis.stop()
            answer = api.get("/health/ready")
            assert answer.status_code == 503
            body = answer.json()
            assert body["status"] == "unavailable"
            assert len(body["reasons"]) == 1
            assert body["reasons"][0].startswith("broker unreachable")
    finally:
        redis.stop()


def test_ready_says_503_when_the_database_is_unreachable(settings: Settings) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    with running_api(settings.model_copy(update={"database_url": url})) as api:
        answer = api.get("/health/ready")
    assert answer.status_code == 503
    assert answer.json()["reasons"][0].startswith("database unreachable")


def test_celery_health_lists_live_workers_per_queue(
    settings: Settings, workers: list[Worker]
) -> None:
    with running_api(settings) as api:
        answer = api.get("/health/celery")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok" and body["broker"] == {"ok": True}
    nodes = {q: set(v["nodes"]) for q, v in body["workers"].items()}
    assert {w.name for w in workers} <= {n.split("@")[0] for n in nodes["es"] | nodes["http"]}
    assert body["workers"]["es"]["count"] >= 1 and body["workers"]["http"]["count"] >= 1
    assert set(body["waiting"]) == {"es", "http", "maintenance"}


def test_celery_health_is_503_when_the_broker_is_down(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with running_api(dead) as api:
        answer = api.get("/health/celery")
    assert answer.status_code == 503
    assert answer.json()["broker"]["ok"] is False


@pytest.mark.parametrize("queue", ["es", "http"])
def test_canary_goes_through_a_worker(
    settings: Settings, workers: list[Worker], pg_repo: TaskLogRepository, queue: str
) -> None:
    with running_api(settings) as api:
        answer = api.post("/api/v1/canary", json={"queue": queue})
    assert answer.status_code == 202
    row = wait_finished(pg_repo, answer.json()["task_id"])
    assert row.status == "success" and row.result is not None
    assert row.result["queue"] == queue and row.queue == queue


def test_publish_failure_keeps_the_row_pending_and_answers_the_task_id(
    settings: Settings, pg_repo: TaskLogRepository
) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with running_api(dead) as api:
        answer = api.post("/api/v1/canary", json={"queue": "es"})
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "queued" and "broker is unreachable" in body["message"]
    row = pg_repo.get_by_task_id(body["task_id"])
    assert row is not None
    assert (row.status, row.published_at, row.attempts) == ("pending", None, 0)


def _rows(settings: Settings) -> int:
    with get_engine(settings.database_url).connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM task_log")).scalar_one())


def test_bad_canary_request_is_422_and_stores_nothing(settings: Settings) -> None:
    before = _rows(settings)
    with running_api(settings) as api:
        answer = api.post("/api/v1/canary", json={"queue": "nope"})
        extra = api.post("/api/v1/canary", json={"queue": "es", "api_key": "x"})
    assert answer.status_code == 422 and extra.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "queue"]
    assert _rows(settings) == before
