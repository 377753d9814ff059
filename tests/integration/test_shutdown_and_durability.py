"""A worker's SIGTERM is bounded, and neither it nor a Redis crash loses or repeats anything.

Each test runs on a redis-server of its own, so the worker and the restarts touch nothing
that other tests use.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from redis import Redis

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.db import session_factory
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import all_finished, effects, enqueuer, es_worker, isolated, wait_finished
from tests.support.procs import RedisServer, wait_until
from tests.support.tasks import TEST_EFFECT, trace_key

pytestmark = pytest.mark.slow


def test_sigterm_lets_the_running_task_finish_and_leaves_the_rest_queued(
    settings: Settings, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        own = isolated(settings, tmp_path, redis)
        client = Redis.from_url(redis.url, decode_responses=True)
        worker = es_worker(own, tmp_path, WORKER_SOFT_SHUTDOWN_TIMEOUT_S="20").start()
        running = enqueuer(own).enqueue(TEST_EFFECT.name, {"key": "running", "sleep_s": 3})
        started = trace_key("started", "running")
        wait_until(lambda: client.llen(started) == 1, 30, what="the first task to start")
        waiting = [
            enqueuer(own).enqueue(TEST_EFFECT.name, {"key": f"waiting-{n}"}) for n in range(3)
        ]
        assert worker.proc is not None
        os.kill(worker.proc.pid, signal.SIGTERM)  # what Kubernetes sends on a rollout
        worker.proc.wait(30)
        repo = TaskLogRepository(session_factory(own.database_url))
        first = repo.get_by_task_id(running.task_id)
        assert first is not None and (first.status, first.attempts) == ("success", 1)
        assert all(repo.get_by_task_id(w.task_id).status == "pending" for w in waiting)  # type: ignore[union-attr]
        successor = es_worker(own, tmp_path).start()
        try:
            rows = [wait_finished(repo, w.task_id) for w in waiting]
        finally:
            successor.stop()
        assert {r.status for r in rows} == {"success"}
        assert effects(client, "running") == [running.task_id]
        assert client.llen(started) == 1  # the finished task did not run again
        for n, w in enumerate(waiting):
            assert effects(client, f"waiting-{n}") == [w.task_id]
        client.close()
    finally:
        redis.stop()


def test_sigterm_gives_running_tasks_the_soft_timeout_then_requeues_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        own = isolated(settings, tmp_path, redis)
        client = Redis.from_url(redis.url, decode_responses=True)
        queue = f"{own.redis_key_prefix}es"
        worker = es_worker(own, tmp_path, WORKER_SOFT_SHUTDOWN_TIMEOUT_S="2").start()
        # A delayed retry, held by the worker until its countdown ends...
        later = make_celery_app(own).send_task(
            TEST_EFFECT.name, kwargs={"payload": {"key": "later"}}, countdown=15, queue="es"
        )
        wait_until(lambda: client.llen(queue) == 0, 30, what="the worker to take the delayed one")
        # ...and a task that runs far longer than the soft-shutdown timeout.
        long = enqueuer(own).enqueue(TEST_EFFECT.name, {"key": "long", "hang_first_s": 120})
        started = trace_key("started", "long")
        wait_until(lambda: client.llen(started) == 1, 30, what="the long task to start")
        assert worker.proc is not None
        os.kill(worker.proc.pid, signal.SIGTERM)  # what Kubernetes sends on a rollout
        try:
            # 2 s for the running task, then the rest is cancelled: not 120 s, nor the
            # visibility timeout (20 minutes by default).
            worker.proc.wait(30)
        finally:
            worker.stop()  # SIGKILL if it is still there: it must not hold the test forever
        # Both messages are back on the queue the moment the worker is gone.
        assert client.llen(queue) == 2
        assert client.hlen(f"{own.redis_key_prefix}unacked") == 0
        assert effects(client, "long") == [] and effects(client, "later") == []
        successor = es_worker(own, tmp_path).start()
        try:
            repo = TaskLogRepository(session_factory(own.database_url))
            rows = wait_until(
                lambda: all_finished(repo, [long.task_id, later.id]), 60, what="both tasks"
            )
        finally:
            successor.stop()
        assert {r.status for r in rows} == {"success"}
        # The cancelled attempt applied nothing; each effect happened exactly once.
        assert effects(client, "long") == [long.task_id]
        assert effects(client, "later") == [later.id]
        assert client.llen(started) == 2
        client.close()
    finally:
        redis.stop()


def test_sigterm_on_an_idle_worker_returns_its_delayed_messages_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    # Without a running task the soft shutdown is skipped (worker_enable_soft_shutdown_on_idle
    # is off): the delayed retries a worker holds must still go back to the queue.
    redis = RedisServer(tmp_path / "redis").start()
    try:
        own = isolated(settings, tmp_path, redis)
        client = Redis.from_url(redis.url, decode_responses=True)
        queue = f"{own.redis_key_prefix}es"
        worker = es_worker(own, tmp_path, WORKER_SOFT_SHUTDOWN_TIMEOUT_S="300").start()
        app = make_celery_app(own)
        for n in range(3):
            app.send_task(
                TEST_EFFECT.name,
                kwargs={"payload": {"key": f"held-{n}"}},
                countdown=600,
                queue="es",
            )
        wait_until(lambda: client.llen(queue) == 0, 30, what="the worker to hold all three")
        assert worker.proc is not None
        os.kill(worker.proc.pid, signal.SIGTERM)
        try:
            worker.proc.wait(60)  # far below the 300 s soft-shutdown timeout
        finally:
            worker.stop()
        assert client.llen(queue) == 3
        assert client.hlen(f"{own.redis_key_prefix}unacked") == 0
        client.close()
    finally:
        redis.stop()


def test_queued_tasks_survive_a_redis_crash_with_append_only_file(
    settings: Settings, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis", durable=True).start()
    own = isolated(settings, tmp_path, redis)
    try:
        sent = [enqueuer(own).enqueue(TEST_EFFECT.name, {"key": f"aof-{n}"}) for n in range(10)]
        time.sleep(1.5)  # appendfsync everysec: what is older than a second is on disk
        redis.kill()
        redis = RedisServer(tmp_path / "redis", port=redis.port, durable=True).start()
        client = Redis.from_url(redis.url, decode_responses=True)
        assert client.llen(f"{own.redis_key_prefix}es") == 10
        worker = es_worker(own, tmp_path).start()
        try:
            repo = TaskLogRepository(session_factory(own.database_url))
            rows = [wait_finished(repo, s.task_id) for s in sent]
        finally:
            worker.stop()
        assert {r.status for r in rows} == {"success"}
        for n, s in enumerate(sent):
            assert effects(client, f"aof-{n}") == [s.task_id]
        client.close()
    finally:
        redis.stop()
