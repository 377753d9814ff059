"""A test-only tracked task, loaded into real workers with `-I tests.support.tasks`.

Its behaviour comes from the payload; it leaves its traces in Redis under the run's prefix:
`started:<key>` gets the pool pid of every attempt, `effects:<key>` the task id of every
completed effect, so a test can count what really happened. `kill_until_fixed` and
`hang_until_fixed` kill or hang its pool process until a test sets `fixed:<key>`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import psycopg
from celery.exceptions import SoftTimeLimitExceeded
from redis import Redis
from sqlalchemy import make_url

from services.core.config import get_settings
from services.core.errors import PermanentError, TransientError
from services.core.taskdefs import Queue, TaskSpec, register
from services.core.tracking import TaskContext
from services.core.tracking.task import tracked_task

# Tests also publish it by hand, without a task-log row (a delayed retry held by a worker at
# shutdown, say): like the scheduler's upkeep, it is recorded and run then.
TEST_EFFECT = TaskSpec("test_effect", Queue.ES, adopts_unknown=True)
register(TEST_EFFECT)


def trace_key(kind: str, key: str) -> str:
    """Redis key of a trace list of this run."""
    return f"{get_settings().redis_key_prefix}{kind}:{key}"


def _watch_until_killed(ctx: TaskContext, redis: Redis, key: str) -> None:
    """Hang past every time limit, ignoring SIGTERM, noting the task's row as this attempt
    sees it (`<status>:<attempts>` under `watched:<key>`) until the process is killed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    url = make_url(get_settings().database_url).set(drivername="postgresql")
    connection: psycopg.Connection[tuple[str, int]] | None = None
    while True:
        try:
            if connection is None:
                connection = psycopg.connect(url.render_as_string(hide_password=False))
                connection.autocommit = True
            row = connection.execute(
                "SELECT status, attempts FROM task_log WHERE task_id = %s", (ctx.task_id,)
            ).fetchone()
            if row is not None:
                redis.rpush(trace_key("watched", key), f"{row[0]}:{row[1]}")
            time.sleep(0.005)
        except Exception:
            # The soft time limit arrives anywhere, mid-query too: start a new connection.
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()
            connection = None


def _hang(seconds: float) -> None:
    # Ignore the soft limit, so that only the hard limit can stop this attempt.
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.05)


@tracked_task(TEST_EFFECT)
def test_effect(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fail as told, then apply one effect."""
    redis = Redis.from_url(get_settings().redis_url)
    key = payload["key"]
    redis.rpush(trace_key("started", key), os.getpid())
    calls = redis.incr(trace_key("calls", key))
    if calls <= payload.get("transient_failures", 0) or payload.get("always_transient"):
        raise TransientError(
            f"downstream unavailable (call {calls})", retry_after_s=payload.get("retry_after_s")
        )
    if payload.get("permanent"):
        raise PermanentError("mapper_parsing_exception: field [price] of type [float]")
    if calls == 1 and payload.get("watch_first"):
        _watch_until_killed(ctx, redis, key)
    fixed = bool(redis.exists(trace_key("fixed", key)))
    if payload.get("kill_until_fixed") and not fixed:
        # As a segfault or the OOM killer would: the pool process dies mid-task.
        os.kill(os.getpid(), signal.SIGKILL)
    if payload.get("hang_until_fixed") and not fixed:
        _hang(3600)
    if calls == 1 and payload.get("hang_first_s"):
        _hang(payload["hang_first_s"])
    time.sleep(payload.get("sleep_s", 0))
    redis.rpush(trace_key("effects", key), ctx.task_id)
    return {"key": key, "calls": calls, "secret_seen": "api_key" in ctx.secrets}
