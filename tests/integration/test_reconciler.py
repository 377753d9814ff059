"""The reconciler republishes accepted tasks the broker lost, and only those.

Runs on a task log and a Redis of its own: a pass looks at every task of its database.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis

from services.core.celery_app import make_celery_app
from services.core.config import Settings, get_settings
from services.core.db import session_factory
from services.core.tasklog import migrate
from services.core.tasklog.models import utcnow
from services.core.tasklog.reconciler import LOCK_KEY, Reconciler
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import effects, enqueuer, wait_finished
from tests.support.procs import RedisServer, Worker, free_port
from tests.support.tasks import TEST_EFFECT

pytestmark = pytest.mark.slow


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[tuple[Settings, RedisServer]]:
    """Settings on a private SQLite task log and a private redis-server."""
    redis = RedisServer(tmp_path / "redis").start()
    url = f"sqlite:///{tmp_path / 'tasklog.db'}"
    migrate.upgrade(url)
    settings = get_settings().model_copy(update={"database_url": url, "redis_url": redis.url})
    try:
        yield settings, redis
    finally:
        redis.stop()


def _reconciler(settings: Settings, client: Redis) -> Reconciler:
    return Reconciler(
        sessions=session_factory(settings.database_url),
        celery=make_celery_app(settings),
        redis=client,
        key_prefix=settings.redis_key_prefix,
        stale_s=60,
        processing_stale_s=settings.processing_stale_s,
    )


def _worker(settings: Settings, log_dir: Path) -> Worker:
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    return Worker("services.es_worker", "es", log_dir, env=env)


def _send(settings: Settings, n: int) -> list[tuple[str, str]]:
    sent = []
    for i in range(n):
        key = f"rec-{i}-{free_port()}"
        accepted = enqueuer(settings).enqueue(TEST_EFFECT.name, {"key": key})
        sent.append((accepted.task_id, key))
    return sent


def test_a_publish_that_failed_is_republished_and_runs_once(
    isolated: tuple[Settings, RedisServer], tmp_path: Path
) -> None:
    settings, _ = isolated
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    accepted = enqueuer(dead).enqueue(TEST_EFFECT.name, {"key": "after-outage"})
    assert not accepted.published
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    reconciler = _reconciler(settings, client)
    # Too young: an accepted task is left alone while its publish may still be under way.
    assert reconciler.run_once().republished == []
    report = reconciler.run_once(now=utcnow() + timedelta(minutes=5))
    assert report.republished == [accepted.task_id]
    worker = _worker(settings, tmp_path).start()
    try:
        repo = TaskLogRepository(session_factory(settings.database_url))
        row = wait_finished(repo, accepted.task_id)
    finally:
        worker.stop()
    assert (row.status, row.attempts) == ("success", 1)
    assert effects(client, "after-outage") == [accepted.task_id]
    client.close()


def test_tasks_whose_message_is_alive_are_not_republished(
    isolated: tuple[Settings, RedisServer],
) -> None:
    settings, _ = isolated
    sent = _send(settings, 10)
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    report = _reconciler(settings, client).run_once(now=utcnow() + timedelta(minutes=5))
    assert (report.candidates, report.live, report.republished) == (10, 10, [])
    assert client.llen(f"{settings.redis_key_prefix}es") == len(sent)
    client.close()


def test_tasks_lost_in_a_redis_restart_are_republished_and_run_once(
    isolated: tuple[Settings, RedisServer], tmp_path: Path
) -> None:
    settings, redis = isolated
    sent = _send(settings, 20)
    # Restart without persistence: every queued message is gone.
    redis.stop()
    redis = RedisServer(tmp_path / "redis2", port=redis.port).start()
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        assert client.llen(f"{settings.redis_key_prefix}es") == 0
        report = _reconciler(settings, client).run_once(now=utcnow() + timedelta(minutes=5))
        assert sorted(report.republished) == sorted(t for t, _ in sent)
        worker = _worker(settings, tmp_path).start()
        try:
            repo = TaskLogRepository(session_factory(settings.database_url))
            rows = [wait_finished(repo, t) for t, _ in sent]
        finally:
            worker.stop()
        assert {r.status for r in rows} == {"success"}
        for task_id, key in sent:
            assert effects(client, key) == [task_id]
    finally:
        client.close()
        redis.stop()


def test_a_second_pass_waits_for_the_first(isolated: tuple[Settings, RedisServer]) -> None:
    settings, _ = isolated
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    client.set(f"{settings.redis_key_prefix}{LOCK_KEY}", "1", ex=30)
    assert _reconciler(settings, client).run_once().ran is False
    client.close()


def test_live_messages_are_read_in_one_step_while_a_worker_takes_one(settings: Settings) -> None:
    # A message moves from a queue list into kombu's unacked hash (a worker taking it) and
    # back (a restore), over and over. Read in separate steps, it can be in neither place at
    # the moments its two places are read, and would be republished as lost.
    from services.core.tasklog.reconciler import live_task_ids

    prefix = f"{settings.redis_key_prefix}atomic-{uuid.uuid4().hex[:6]}:"
    client = Redis.from_url(settings.redis_url)
    message = json.dumps({"headers": {"id": "moving-task"}, "body": ""})
    unacked = json.dumps([json.loads(message), "tasks", "es"])
    move = client.register_script(
        "if redis.call('LREM', KEYS[1], 0, ARGV[1]) == 1 then "
        "redis.call('HSET', KEYS[2], 'tag', ARGV[2]) else "
        "redis.call('HDEL', KEYS[2], 'tag'); redis.call('LPUSH', KEYS[1], ARGV[1]) end"
    )
    keys = [f"{prefix}es", f"{prefix}unacked"]
    client.lpush(keys[0], message)
    stop = threading.Event()

    def mover() -> None:
        mover_client = Redis.from_url(settings.redis_url)
        while not stop.is_set():
            move(keys=keys, args=[message, unacked], client=mover_client)
        mover_client.close()

    thread = threading.Thread(target=mover, daemon=True)
    thread.start()
    try:
        missed = sum("moving-task" not in live_task_ids(client, prefix) for _ in range(300))
    finally:
        stop.set()
        thread.join(5)
        client.delete(*keys)
        client.close()
    assert missed == 0


def test_an_expired_upkeep_lock_is_not_released_by_its_old_holder(settings: Settings) -> None:
    from services.core.guards.lock import RedisLock

    client = Redis.from_url(settings.redis_url)
    key = f"{settings.redis_key_prefix}lock-{uuid.uuid4().hex[:6]}"
    try:
        first, second = RedisLock(client, key), RedisLock(client, key)
        old = first.acquire(ttl_s=0.2)
        assert old is not None and second.acquire(ttl_s=5) is None
        time.sleep(0.3)  # the first pass overran its lock
        new = second.acquire(ttl_s=5)
        assert new is not None
        assert not first.release(old)  # the overrunning pass must not free the new one's lock
        assert client.get(key) == new.encode()
        assert second.release(new) and client.get(key) is None
    finally:
        client.delete(key)
        client.close()
