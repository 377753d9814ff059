"""A whole worker killed with SIGKILL: its unacked message comes back after the visibility timeout.

Kept in its own module so that no other worker consumes the queue meanwhile.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis

from services.core.config import Settings
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import effects, send, wait_finished
from tests.support.procs import Worker, wait_until
from tests.support.tasks import trace_key

pytestmark = pytest.mark.slow


def test_killed_worker_is_redelivered_after_visibility_timeout(
    settings: Settings,
    pg_repo: TaskLogRepository,
    redis: Redis,
    tmp_path: Path,
) -> None:
    short = {
        "BROKER_VISIBILITY_TIMEOUT_S": "6",
        "BROKER_RESTORE_INTERVAL_S": "1",
        "TASK_SOFT_TIME_LIMIT_S": "3",
        "TASK_TIME_LIMIT_S": "4",
        # Countdowns and the attempt's lease must fit in the visibility timeout too.
        "LONG_WAIT_S": "0.5",
        "LEASE_MARGIN_S": "1",
    }
    first = Worker("services.es_worker", "es", tmp_path, env=short, concurrency=1).start()
    try:
        task_id, key = send(settings, sleep_s=2)
        started = trace_key("started", key)
        wait_until(lambda: redis.llen(started) == 1, 30, what="the task to start")
        first.kill()
    finally:
        first.stop()
    assert effects(redis, key) == []
    second = Worker("services.es_worker", "es", tmp_path, env=short, concurrency=1).start()
    try:
        row = wait_finished(pg_repo, task_id, timeout_s=60)
    finally:
        second.stop()
    assert (row.status, row.attempts) == ("success", 2)
    assert effects(redis, key) == [task_id]


def test_hard_time_limit_is_recorded_and_retried(
    settings: Settings, pg_repo: TaskLogRepository, redis: Redis, tmp_path: Path
) -> None:
    limits = {"TASK_SOFT_TIME_LIMIT_S": "1", "TASK_TIME_LIMIT_S": "2"}
    worker = Worker("services.es_worker", "es", tmp_path, env=limits, concurrency=1).start()
    try:
        task_id, key = send(settings, hang_first_s=6)
        row = wait_finished(pg_repo, task_id, timeout_s=40)
    finally:
        worker.stop()
    assert (row.status, row.attempts, row.retry_count) == ("success", 2, 1)
    assert row.error_message is not None and "TimeLimitExceeded" in row.error_message
    assert effects(redis, key) == [task_id]


def test_a_hard_time_limit_is_recorded_only_once_the_attempt_is_dead(
    settings: Settings, pg_repo: TaskLogRepository, redis: Redis, tmp_path: Path
) -> None:
    limits = {"TASK_SOFT_TIME_LIMIT_S": "1", "TASK_TIME_LIMIT_S": "2"}
    worker = Worker("services.es_worker", "es", tmp_path, env=limits, concurrency=2).start()
    try:
        # The first attempt ignores the soft limit and SIGTERM, and notes what the task log
        # says of it until it is killed; the second attempt runs on the other pool process.
        task_id, key = send(settings, watch_first=True)
        row = wait_finished(pg_repo, task_id, timeout_s=40)
    finally:
        worker.stop()
    assert (row.status, row.attempts) == ("success", 2)
    seen: list[str] = redis.lrange(trace_key("watched", key), 0, -1)  # type: ignore[assignment]
    # While the attempt's process lived, the log never called it lost (nor let another run).
    assert seen and set(seen) == {"processing:1"}, sorted(set(seen))
    assert effects(redis, key) == [task_id]
