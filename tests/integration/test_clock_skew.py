"""Leases and holds follow the database's clock, not the clock of the worker that writes them.

Two machines' clocks drift apart; a lease written by one and read by another must still
keep a second attempt out, and a hold must end when the database says so. Each test runs a
worker whose wall clock is off (`tests/support/skew`, a test-only start-up shim) beside
workers whose clock is right.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import func, select

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import effects, send, wait_finished
from tests.support.procs import Worker, wait_until
from tests.support.tasks import TEST_EFFECT, trace_key

pytestmark = pytest.mark.slow

# A lease of 26 s (hard limit 25 + margin 1); the skewed worker runs a minute ahead.
LIMITS = {"TASK_SOFT_TIME_LIMIT_S": "20", "TASK_TIME_LIMIT_S": "25", "LEASE_MARGIN_S": "1"}
AHEAD_S = 60.0


@pytest.fixture
def on_time(tmp_path: Path) -> Iterator[Worker]:
    worker = Worker("services.es_worker", "es", tmp_path, env=LIMITS, concurrency=1).start()
    yield worker
    worker.stop()


def test_a_worker_whose_clock_runs_ahead_does_not_take_a_live_lease(
    on_time: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis, tmp_path: Path
) -> None:
    # A worker a minute ahead, on a queue no other worker here reads, so that the duplicate
    # reaches it.
    ahead = Worker(
        "services.es_worker",
        "maintenance",
        tmp_path,
        env=LIMITS,
        concurrency=1,
        clock_skew_s=AHEAD_S,
    ).start()
    try:
        task_id, key = send(settings, sleep_s=10)
        started = trace_key("started", key)
        wait_until(lambda: redis.llen(started) == 1, 30, what="the task to start")
        # A duplicate of the running task (a redelivery) reaches the worker that is ahead:
        # by its own clock, the running attempt's lease ran out long ago.
        make_celery_app(settings).send_task(
            TEST_EFFECT.name,
            kwargs={"payload": {"key": key, "sleep_s": 10}},
            task_id=task_id,
            queue="maintenance",
        )
        wait_until(
            lambda: (
                "another delivery is running this task" in ahead.log()
                or redis.lrange(started, 0, -1) != redis.lrange(started, 0, 0)
            ),
            30,
            what="the duplicate to be handled",
        )
        row = wait_finished(pg_repo, task_id, timeout_s=30)
    finally:
        ahead.stop()
    assert (row.status, row.attempts, redis.llen(started)) == ("success", 1, 1)
    assert effects(redis, key) == [task_id]


def test_a_hold_written_by_a_worker_whose_clock_runs_behind_ends_by_the_database_clock(
    settings: Settings, pg_repo: TaskLogRepository, redis: Redis, tmp_path: Path
) -> None:
    behind = Worker(
        "services.es_worker",
        "es",
        tmp_path,
        env={**LIMITS, "LONG_WAIT_S": "2", "RETRY_BACKOFF_MAX_S": "60"},
        concurrency=1,
        clock_skew_s=-300.0,
    ).start()
    try:
        # The first call fails with "retry after 30 s": longer than LONG_WAIT_S, so the
        # retry waits in the task log until it is due.
        task_id, _ = send(settings, transient_failures=1, retry_after_s=30)

        def held() -> tuple[datetime, datetime] | None:
            with pg_repo.sessions() as session:
                row = pg_repo.get_by_task_id(task_id)
                now = session.scalar(select(func.now()))
            if row is None or not row.held or row.next_attempt_at is None or now is None:
                return None
            return row.next_attempt_at, now

        due, now = wait_until(held, 30, what="the retry to be held in the log")
    finally:
        behind.stop()
    wait = (due - now).total_seconds()
    # Due about 30 s from now by the database's clock (not 270 s ago by the worker's).
    assert 20 < wait <= 31, wait
