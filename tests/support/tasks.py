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

from celery.exceptions import SoftTimeLimitExceeded
from redis import Redis

from services.core.config import get_settings
from services.core.errors import PermanentError, TransientError
from services.core.taskdefs import Queue, TaskSpec, register
from services.core.tracking import TaskContext
from services.core.tracking.task import tracked_task

TEST_EFFECT = TaskSpec("test_effect", Queue.ES)
register(TEST_EFFECT)


def trace_key(kind: str, key: str) -> str:
    """Redis key of a trace list of this run."""
    return f"{get_settings().redis_key_prefix}{kind}:{key}"


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
        raise TransientError(f"downstream unavailable (call {calls})")
    if payload.get("permanent"):
        raise PermanentError("mapper_parsing_exception: field [price] of type [float]")
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
