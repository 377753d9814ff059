"""Helpers to drive the test task through the real API-side enqueue path and watch it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.db import session_factory
from services.core.enqueue import Enqueuer
from services.core.tasklog import migrate
from services.core.tasklog.models import TaskLog, TaskStatus, utcnow
from services.core.tasklog.repository import Claim, TaskLogRepository
from tests.support.procs import RedisServer, Worker, wait_until
from tests.support.tasks import TEST_EFFECT, trace_key


def isolated(settings: Settings, tmp_path: Path, redis: RedisServer) -> Settings:
    """`settings` on a redis-server of their own and a fresh SQLite task log in `tmp_path`."""
    url = f"sqlite:///{tmp_path / 'tasklog.db'}"
    migrate.upgrade(url)
    return settings.model_copy(update={"database_url": url, "redis_url": redis.url})


def es_worker(settings: Settings, log_dir: Path, **env: str) -> Worker:
    """A one-process es-worker (with the test task) on the task log and broker of `settings`."""
    base = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    return Worker("services.es_worker", "es", log_dir, env={**base, **env}, concurrency=1)


def enqueuer(settings: Settings) -> Enqueuer:
    """The API's enqueue path for `settings`."""
    return Enqueuer(
        repo=TaskLogRepository(session_factory(settings.database_url)),
        celery=make_celery_app(settings),
        settings=settings,
    )


def send(settings: Settings, **payload: Any) -> tuple[str, str]:
    """Enqueue the test task with a fresh trace key; (task id, key)."""
    key = uuid.uuid4().hex
    accepted = enqueuer(settings).enqueue(TEST_EFFECT.name, {"key": key, **payload})
    assert accepted.published
    return accepted.task_id, key


def wait_finished(repo: TaskLogRepository, task_id: str, timeout_s: float = 30) -> TaskLog:
    """The task's row once it is finished."""

    def finished() -> TaskLog | None:
        row = repo.get_by_task_id(task_id)
        return row if row is not None and row.is_finished else None

    return wait_until(finished, timeout_s, what=f"task {task_id} to finish")  # type: ignore[no-any-return]


def accepted(answer: httpx.Response) -> str:
    """The task id of a write the API accepted (202)."""
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def wait_processing(repo: TaskLogRepository, task_id: str, timeout_s: float = 20) -> None:
    """Wait until an attempt of the task runs."""
    wait_until(
        lambda: (row := repo.get_by_task_id(task_id)) is not None and row.status == "processing",
        timeout_s,
        what=f"task {task_id} to start",
    )


def all_finished(repo: TaskLogRepository, task_ids: list[str]) -> list[TaskLog] | None:
    """The rows of the tasks once every one has finished, else None (for `wait_until`)."""
    rows = [repo.get_by_task_id(t) for t in task_ids]
    if all(r is not None and r.is_finished for r in rows):
        return [r for r in rows if r is not None]
    return None


def failed_task(
    repo: TaskLogRepository,
    *,
    customer: str,
    name: str,
    payload: dict[str, Any],
    user: str | None = None,
) -> str:
    """A task of the http queue recorded as failed for good (deadline exhausted); its id."""
    task_id = str(uuid.uuid4())
    repo.create(
        task_id=task_id,
        task_name=name,
        queue="http",
        payload=payload,
        user_id=user,
        customer_id=customer,
        deadline_at=utcnow() + timedelta(hours=1),
    )
    claim = repo.claim(task_id)
    assert isinstance(claim, Claim)
    repo.update_status(
        task_id,
        TaskStatus.FAILED,
        error="ChatbotMobile 503",
        error_kind="transient",
        failure_reason="deadline_exhausted",
        attempt=claim.attempt,
    )
    return task_id


def effects(redis: Redis, key: str) -> list[str]:
    """Task ids whose effect was applied for `key`."""
    return redis.lrange(trace_key("effects", key), 0, -1)  # type: ignore[return-value]
