"""The API's health endpoints and its enqueue path, over HTTP, with real Redis and workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest
from anyio import to_thread
from redis import Redis
from sqlalchemy import text

from services.api.main import create_app
from services.core.config import Settings
from services.core.db import get_engine
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import wait_finished
from tests.support.procs import RedisServer, Worker, free_port, wait_until
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


def test_ready_follows_the_task_log_not_the_broker(
    settings: Settings, tmp_path: Path, pg_repo: TaskLogRepository
) -> None:
    # With Redis down a write is still accepted (its row is committed; the reconciler
    # publishes it later), so the API must stay in its Service.
    redis = RedisServer(tmp_path / "redis").start()
    try:
        with running_api(settings.model_copy(update={"redis_url": redis.url})) as api:
            assert api.get("/health/ready").json() == {"status": "ok"}
            redis.stop()
            answer = api.get("/health/ready")
            assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
            accepted = api.post("/api/v1/canary", json={"queue": "es"})
            assert accepted.status_code == 202
            row = pg_repo.get_by_task_id(accepted.json()["task_id"])
            assert row is not None and row.status == "pending"
    finally:
        redis.stop()


def test_ready_says_503_when_the_database_is_unreachable_without_its_error_text(
    settings: Settings,
) -> None:
    port = free_port()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere"
    with running_api(settings.model_copy(update={"database_url": url})) as api:
        answer = api.get("/health/ready")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "reasons": ["task log database unreachable"]}


def test_celery_health_lists_live_workers_per_queue(
    settings: Settings, workers: list[Worker]
) -> None:
    with running_api(settings) as api:  # with a service token
        answer = api.get("/health/celery")
        anonymous = httpx.get(f"{api.base_url}/health/celery")
        forged = api.get("/health/celery", headers={"Authorization": "Bearer not.a.token"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok" and body["broker"] == {"ok": True}
    nodes = {q: set(v["nodes"]) for q, v in body["workers"].items()}
    assert {w.name for w in workers} <= {n.split("@")[0] for n in nodes["es"] | nodes["http"]}
    assert body["workers"]["es"]["count"] >= 1 and body["workers"]["http"]["count"] >= 1
    assert set(body["waiting"]) == {"es", "http", "maintenance"}
    # Host names are for authenticated callers; the counts are for everyone.
    assert anonymous.status_code == 200
    assert all(set(v) == {"count"} for v in anonymous.json()["workers"].values())
    assert anonymous.json()["workers"]["es"]["count"] == body["workers"]["es"]["count"]
    assert forged.status_code == 401


def test_celery_health_is_503_when_the_broker_is_down(settings: Settings) -> None:
    port = free_port()
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
    with running_api(dead) as api:
        answer = api.get("/health/celery")
    assert answer.status_code == 503
    assert answer.json()["broker"] == {"ok": False, "reason": "broker unreachable"}


def test_celery_health_says_what_the_broker_is_when_asked(
    settings: Settings, tmp_path: Path
) -> None:
    # The broker is asked at each call (one PING, no retries): a view up to
    # HEALTH_CELERY_REFRESH_S old once said "fine" 17 s after Redis stopped, and "down" 15 s
    # after it was back. The workers' broadcast stays in the refreshed view.
    redis = RedisServer(tmp_path / "redis").start()
    try:
        own = settings.model_copy(update={"redis_url": redis.url})
        with running_api(own) as api:
            assert api.get("/health/celery").json()["broker"]["ok"] is True
            redis.stop()
            down = api.get("/health/celery")
            assert (down.status_code, down.json()["broker"]["ok"]) == (503, False)
            redis.start()
            back = api.get("/health/celery").json()
            assert back["broker"]["ok"] is True
    finally:
        redis.stop()


class Broadcasts(threading.Thread):
    """Counts broadcasts to the workers (PUBLISH on the pidbox channel) through MONITOR."""

    END = "end-of-broadcast-count"

    def __init__(self, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.url = redis_url
        self.watching = threading.Event()
        self.seen: list[str] = []

    def run(self) -> None:
        client = Redis.from_url(self.url, decode_responses=True)
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self.watching.set()  # MONITOR answered OK: every later command is seen
            while self.END not in (command := monitor.next_command()["command"]):
                if command.startswith("PUBLISH") and "pidbox" in command:
                    self.seen.append(command)
        client.close()

    def finish(self) -> None:
        """Stop counting (the monitor ends at a marker command, so nothing is cut short)."""
        client = Redis.from_url(self.url)
        client.echo(self.END)
        client.close()
        self.join(10)


def _burst(api: httpx.Client, calls: int = 80) -> list[httpx.Response]:
    with ThreadPoolExecutor(40) as pool:
        return list(pool.map(lambda _: api.get("/health/celery"), range(calls)))


def test_celery_health_asks_the_workers_once_per_refresh_however_many_call(
    settings: Settings, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    fresh, stale = Broadcasts(redis.url), Broadcasts(redis.url)
    try:
        own = settings.model_copy(update={"redis_url": redis.url})
        # A fresh view serves every caller: no broadcast at all.
        with running_api(own.model_copy(update={"health_celery_refresh_s": 3600.0})) as api:
            first = api.get("/health/celery").json()
            fresh.start()
            assert fresh.watching.wait(10)
            answers = _burst(api)
            fresh.finish()
        # A stale view: the callers still get it at once, and one refresh runs for them all.
        with running_api(own.model_copy(update={"health_celery_refresh_s": 5.0})) as api:
            old = api.get("/health/celery").json()["checked_at"]
            time.sleep(5.5)
            stale.start()
            assert stale.watching.wait(10)
            served = {a.json()["checked_at"] for a in _burst(api)}
            wait_until(
                lambda: api.get("/health/celery").json()["checked_at"] != old,
                30,
                what="the refreshed view",
            )
            stale.finish()
    finally:
        for watcher in (fresh, stale):
            if watcher.is_alive():
                watcher.finish()
        redis.stop()
    assert {a.status_code for a in answers} == {503}  # no worker reads this Redis
    assert {a.json()["checked_at"] for a in answers} == {first["checked_at"]}
    assert fresh.seen == []
    assert old in served  # nobody waited for the refresh
    assert len(stale.seen) == 1


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


def test_blocking_endpoints_get_api_threads_threads(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"api_threads": 3}))

    async def started() -> float:
        async with app.router.lifespan_context(app):
            return to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(started) == 3
