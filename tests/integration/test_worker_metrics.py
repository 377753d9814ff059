"""A worker's metrics endpoint: pool children merged, dead children swept, restarts start over.

Kept in its own module so that no other worker consumes the queue meanwhile.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from services.core.config import Settings
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import all_finished, send, wait_finished
from tests.support.metrics import scrape, value, values
from tests.support.procs import Worker, free_port, scheduler, wait_until
from tests.support.tasks import TEST_EFFECT, trace_key

pytestmark = pytest.mark.slow

TASK = {"task": TEST_EFFECT.name, "queue": "es"}


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    return tmp_path / "prom"


def _worker(tmp_path: Path, metrics_dir: Path, port: int) -> Worker:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "ES_WORKER_METRICS_PORT": str(port)}
    return Worker("services.es_worker", "es", tmp_path, env=env, concurrency=2)


@pytest.fixture
def worker(tmp_path: Path, metrics_dir: Path, port: int) -> Iterator[Worker]:
    w = _worker(tmp_path, metrics_dir, port).start()
    yield w
    w.stop()


def test_a_killed_pool_child_leaves_no_stale_gauge_and_nothing_counted_twice(
    worker: Worker,
    port: int,
    settings: Settings,
    pg_repo: TaskLogRepository,
    redis: Redis,
) -> None:
    url = f"http://127.0.0.1:{port}/metrics"
    quick = [send(settings)[0] for _ in range(3)]
    wait_until(lambda: all_finished(pg_repo, quick), 30, what="the quick tasks")
    # The first attempt hangs until its pool process is killed; the redelivery runs at once.
    task_id, key = send(settings, hang_first_s=60)
    started = trace_key("started", key)
    wait_until(lambda: redis.llen(started) == 1, 30, what="the hanging attempt to start")
    wait_until(
        lambda: value(scrape(url), "durable_tasks_running", **TASK) == 1, 10, what="running=1"
    )
    child = int(redis.lindex(started, 0))  # type: ignore[arg-type]
    assert worker.proc is not None and child != worker.proc.pid  # a pool child, not the main
    os.kill(child, signal.SIGKILL)
    row = wait_finished(pg_repo, task_id, timeout_s=30)
    assert (row.status, row.attempts) == ("success", 2)

    samples = scrape(url)
    # The killed child had counted one running attempt and never took it back.
    assert value(samples, "durable_tasks_running", **TASK) == 0
    # Counters match the task log: each attempt once, the killed child's included.
    attempts = sum(r.attempts for r in all_finished(pg_repo, [*quick, task_id]) or [])
    assert attempts == 5
    assert value(samples, "durable_task_attempts_total", **TASK) == attempts
    assert value(samples, "durable_task_outcomes_total", outcome="success", **TASK) == 4
    assert value(samples, "durable_worker_start_time_seconds", queue="es") > 0
    assert all("pid" not in s.labels for s in samples)


def test_a_restarted_worker_starts_its_counts_over(
    tmp_path: Path,
    metrics_dir: Path,
    port: int,
    settings: Settings,
    pg_repo: TaskLogRepository,
) -> None:
    url = f"http://127.0.0.1:{port}/metrics"
    first = _worker(tmp_path, metrics_dir, port).start()
    try:
        done = [send(settings)[0] for _ in range(3)]
        wait_until(lambda: all_finished(pg_repo, done), 30, what="the first tasks")
        assert value(scrape(url), "durable_task_attempts_total", **TASK) == 3
        first.kill()  # SIGKILL of the whole worker: no exit handler runs
    finally:
        first.stop()
    assert any(metrics_dir.glob("counter_*.db"))  # what the dead worker left behind
    second = _worker(tmp_path, metrics_dir, port).start()
    try:
        fresh = send(settings)[0]
        wait_finished(pg_repo, fresh)
        samples = scrape(url)
    finally:
        second.stop()
    # Only what this worker did: a count carried over would read 4, a Prometheus
    # counter that never reset.
    assert value(samples, "durable_task_attempts_total", **TASK) == 1
    assert values(samples, "durable_worker_start_time_seconds", queue="es") != []


def test_beats_publish_latency_is_recorded_and_nothing_fails_in_its_signal_handler(
    tmp_path: Path, metrics_dir: Path, port: int
) -> None:
    # Embedded beat runs in a child that closes the descriptors it inherited, the open
    # metric files among them: the publish-latency histogram then failed at each publish
    # (OSError once, TypeError after), so beat's publishes were never counted.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "SCHEDULER_METRICS_PORT": str(port)}
    beat = scheduler(tmp_path, env=env).start()
    try:

        def published() -> float:
            samples = scrape(f"http://127.0.0.1:{port}/metrics")
            found = values(samples, "durable_publish_duration_seconds_count", queue="maintenance")
            return sum(found)

        # The releaser is due every RELEASE_INTERVAL_S: beat publishes it again and again.
        wait_until(lambda: published() >= 3, 60, what="beat's publishes to be counted")
    finally:
        beat.stop()
    assert "Signal handler" not in beat.log()
