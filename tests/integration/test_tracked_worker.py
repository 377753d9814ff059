"""Tracked tasks through a real broker and real worker processes (never eager mode)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from redis import Redis

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import effects, enqueuer, send, wait_finished
from tests.support.procs import Worker, wait_until
from tests.support.tasks import TEST_EFFECT, trace_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prom")


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, metrics_dir: Path) -> Iterator[Worker]:
    w = Worker(
        "services.es_worker",
        "es",
        tmp_path_factory.mktemp("logs"),
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    ).start()
    yield w
    w.stop()


def test_success_path_goes_pending_processing_success(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis
) -> None:
    task_id, key = send(settings)
    row = wait_finished(pg_repo, task_id)
    assert row.status == "success"
    assert row.result == {"key": key, "calls": 1, "secret_seen": False}
    assert (row.attempts, row.retry_count, row.error_message) == (1, 0, None)
    assert row.published_at is not None and row.finished_at is not None
    assert effects(redis, key) == [task_id]
    # The worker logs JSON lines carrying the task id.
    assert f'"task_id": "{task_id}"' in worker.log()


def test_transient_failures_are_retried_then_succeed(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis
) -> None:
    task_id, key = send(settings, transient_failures=2)
    row = wait_finished(pg_repo, task_id)
    assert (row.status, row.retry_count, row.attempts) == ("success", 2, 3)
    # The last error stays visible for the record even after success.
    assert row.error_message == "TransientError: downstream unavailable (call 2)"
    assert effects(redis, key) == [task_id]


def test_permanent_failure_fails_at_once_and_keeps_the_error(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis
) -> None:
    task_id, key = send(settings, permanent=True)
    row = wait_finished(pg_repo, task_id)
    assert (row.status, row.retry_count, row.attempts) == ("failed", 0, 1)
    assert (row.error_kind, row.failure_reason) == ("permanent", "permanent_error")
    assert row.error_message is not None and "mapper_parsing_exception" in row.error_message
    assert effects(redis, key) == []


def test_deadline_exhausted_fails_with_last_error_and_says_so(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, metrics_dir: Path
) -> None:
    short = settings.model_copy(update={"es_retry_budget_s": 2})
    task_id, _ = send(short, always_transient=True)
    row = wait_finished(pg_repo, task_id)
    assert (row.status, row.error_kind, row.failure_reason) == (
        "failed",
        "transient",
        "deadline_exhausted",
    )
    assert row.retry_count >= 2 and row.error_message is not None
    assert row.error_message.startswith("TransientError: downstream unavailable")
    line = next(ln for ln in worker.log().splitlines() if task_id in ln and "for good" in ln)
    assert '"failure_reason": "deadline_exhausted"' in line
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    dead = registry.get_sample_value(
        "durable_task_dead_lettered_total",
        {"task": TEST_EFFECT.name, "queue": "es", "reason": "deadline_exhausted"},
    )
    assert dead is not None and dead >= 1


def test_same_task_id_delivered_twice_has_one_effect(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis
) -> None:
    task_id, key = send(settings)
    wait_finished(pg_repo, task_id)
    make_celery_app(settings).send_task(
        TEST_EFFECT.name, kwargs={"payload": {"key": key}}, task_id=task_id
    )
    wait_until(
        lambda: any(
            task_id in ln and "duplicate delivery" in ln for ln in worker.log().splitlines()
        ),
        30,
        what="the duplicate delivery to be consumed",
    )
    assert effects(redis, key) == [task_id]
    row = pg_repo.get_by_task_id(task_id)
    assert row is not None and (row.status, row.attempts) == ("success", 1)


def test_secrets_reach_the_body_but_not_the_log_or_the_message(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis
) -> None:
    secret = f"sk-{uuid.uuid4().hex}"
    key = uuid.uuid4().hex
    accepted = enqueuer(settings).enqueue(
        TEST_EFFECT.name, {"key": key}, secrets={"api_key": secret}
    )
    row = wait_finished(pg_repo, accepted.task_id)
    assert row.result == {"key": key, "calls": 1, "secret_seen": True}
    assert secret not in repr(row.payload) + repr(row.result) + (row.sealed_secrets or "")
    assert secret not in worker.log()


def test_killed_pool_process_requeues_at_once_and_completes_once(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis
) -> None:
    task_id, key = send(settings, sleep_s=3)
    started = trace_key("started", key)
    pid = int(wait_until(lambda: redis.lindex(started, 0), 30, what="the task to start"))
    os.kill(pid, signal.SIGKILL)
    row = wait_finished(pg_repo, task_id, timeout_s=40)
    assert (row.status, row.attempts) == ("success", 2)
    assert redis.llen(started) == 2
    assert effects(redis, key) == [task_id]


def test_a_duplicate_delivered_while_the_task_runs_is_dropped_not_run(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis
) -> None:
    task_id, key = send(settings, sleep_s=3)
    started = trace_key("started", key)
    wait_until(lambda: redis.llen(started) == 1, 30, what="the task to start")
    # A second message of the same task (a reconciler pass, a redelivery) reaches the
    # worker's other pool process while the first attempt holds its lease.
    make_celery_app(settings).send_task(
        TEST_EFFECT.name, kwargs={"payload": {"key": key, "sleep_s": 3}}, task_id=task_id
    )
    wait_until(
        lambda: any(
            task_id in ln and "another delivery is running" in ln
            for ln in worker.log().splitlines()
        ),
        30,
        what="the duplicate to be dropped",
    )
    row = wait_finished(pg_repo, task_id)
    assert (row.status, row.attempts) == ("success", 1)
    assert redis.llen(started) == 1
    assert effects(redis, key) == [task_id]
