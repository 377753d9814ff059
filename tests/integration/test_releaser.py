"""The releaser publishes tasks held in the task log when they are due, and only then.

Runs against the run's PostgreSQL and Redis under a key prefix no worker reads, so released
messages stay in the queue lists where the test can count them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import text

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.db import session_factory
from services.core.guards.breaker import Breaker, BreakerConfig
from services.core.guards.ratelimit import parse_limits
from services.core.taskdefs import Downstream, Queue
from services.core.tasklog.models import utcnow
from services.core.tasklog.repository import TaskLogRepository
from services.core.tasklog.waits import BACKOFF, ORDER, RATE_LIMIT, WaitLog, breaker_reason
from services.core.tracking.releaser import ReleaseConfig, Releaser
from tests.support.databases import own_database

ES = Downstream.ELASTICSEARCH


@pytest.fixture(scope="module")
def log() -> Iterator[TaskLogRepository]:
    """A task log of this module alone: a pass releases every due task of its database."""
    with own_database("releaser") as url:
        yield TaskLogRepository(session_factory(url))


@pytest.fixture
def own(settings: Settings) -> Settings:
    """The run's settings under a key prefix of this test alone."""
    prefix = f"{settings.redis_key_prefix}release-{uuid.uuid4().hex[:8]}:"
    return settings.model_copy(update={"redis_key_prefix": prefix})


@pytest.fixture
def client(own: Settings) -> Redis:
    return Redis.from_url(own.redis_url)


def _breaker(client: Redis, own: Settings) -> Breaker:
    return Breaker(client, own.redis_key_prefix, ES, BreakerConfig(threshold=1, open_s=30))


def _releaser(log: TaskLogRepository, own: Settings, client: Redis, **config: Any) -> Releaser:
    options: dict[str, Any] = {
        "interval_s": 1.0,
        "queue_depth": 100,
        "batch": 100,
        "deadline_margin_s": 5.0,
        **config,
    }
    return Releaser(
        waits=WaitLog(log.sessions),
        celery=make_celery_app(own),
        redis=client,
        key_prefix=own.redis_key_prefix,
        breakers={ES: _breaker(client, own)},
        config=ReleaseConfig(**options),
    )


def _held(
    log: TaskLogRepository,
    reason: str,
    *,
    due_in_s: float = -1.0,
    deadline_in_s: float = 3600.0,
    name: str = "es_upsert_product",
) -> str:
    task_id = str(uuid.uuid4())
    now = utcnow()
    log.create(
        task_id=task_id,
        task_name=name,
        queue=Queue.ES,
        payload={"customer_id": "c1", "n": task_id},
        deadline_at=now + timedelta(seconds=deadline_in_s),
    )
    refusal = WaitLog(log.sessions).hold(
        task_id,
        reason=reason,
        until=now + timedelta(seconds=due_in_s),
        now=now,
        respect_deadline=False,
    )
    assert refusal is None
    return task_id


def _queued(client: Redis, own: Settings) -> list[str]:
    raw = client.lrange(f"{own.redis_key_prefix}es", 0, -1)
    return [json.loads(m)["headers"]["id"] for m in reversed(raw)]  # type: ignore[arg-type]


def test_due_tasks_are_released_once_in_acceptance_order(
    log: TaskLogRepository, own: Settings, client: Redis
) -> None:
    due = [_held(log, BACKOFF) for _ in range(3)]
    later = _held(log, BACKOFF, due_in_s=600)
    releaser = _releaser(log, own, client)
    report = releaser.run_once()
    assert report.released == {"es": 3}
    assert _queued(client, own) == due
    assert releaser.run_once().released == {}  # released once
    for task_id in due:
        row = log.get_by_task_id(task_id)
        assert row is not None and not row.held and row.published_at is not None
    row = log.get_by_task_id(later)
    assert row is not None and row.held


def test_a_full_queue_is_not_flooded(log: TaskLogRepository, own: Settings, client: Redis) -> None:
    held = [_held(log, BACKOFF) for _ in range(8)]
    releaser = _releaser(log, own, client, queue_depth=5)
    assert releaser.run_once().released == {"es": 5}
    assert releaser.run_once().released == {}  # five are waiting already
    client.delete(f"{own.redis_key_prefix}es")  # a worker took them
    assert releaser.run_once().released == {"es": 3}
    assert sorted(_queued(client, own)) == sorted(held[5:])


def test_breaker_waits_go_out_only_after_the_probe(
    log: TaskLogRepository, own: Settings, client: Redis
) -> None:
    breaker = _breaker(client, own)
    breaker.record_failure()  # open for 30 s
    waiting = [_held(log, breaker_reason(ES)) for _ in range(4)]
    releaser = _releaser(log, own, client)
    assert releaser.run_once().released == {}
    # The open period ends: one task goes out as the probe, the others stay.
    client.delete(f"{own.redis_key_prefix}breaker:elasticsearch:open")
    assert releaser.run_once().released == {"es": 1}
    assert _queued(client, own) == waiting[:1]
    assert breaker.admit().probe  # the released task takes the probe slot when it runs
    assert releaser.run_once().released == {}  # the probe is running
    breaker.record_success()
    assert releaser.run_once().released == {"es": 3}


def test_a_task_near_its_deadline_gets_its_last_attempt_whatever_it_waits_for(
    log: TaskLogRepository, own: Settings, client: Redis
) -> None:
    _breaker(client, own).record_failure()
    near = _held(log, breaker_reason(ES), deadline_in_s=3)
    far = _held(log, breaker_reason(ES))
    # An ordering wait is the exception: a later write never runs before an earlier one.
    ordered = _held(log, ORDER, due_in_s=600, deadline_in_s=3)
    assert _releaser(log, own, client).run_once().released == {"es": 1}
    assert _queued(client, own) == [near]
    for task_id in (far, ordered):
        row = log.get_by_task_id(task_id)
        assert row is not None and row.held


def test_a_pass_releases_no_more_than_the_rate_limits_let_run(
    log: TaskLogRepository, own: Settings, client: Redis
) -> None:
    for _ in range(10):
        _held(log, RATE_LIMIT)
    releaser = _releaser(
        log, own, client, limits=parse_limits("es_upsert_product=2/s"), interval_s=1.0
    )
    assert releaser.run_once().released == {"es": 4}  # 2/s over two intervals


def test_the_release_query_uses_its_index_on_a_large_log(
    log: TaskLogRepository, own: Settings
) -> None:
    # 200,000 finished rows and 2,000 held ones: finding what is due must not read them all.
    with log.sessions() as session, session.begin():
        session.execute(
            text(
                "INSERT INTO task_log (task_id, task_name, queue, payload, status, retry_count,"
                " attempts, deadline_at, created_at, updated_at, seq, held) "
                "SELECT 'plan-' || n, 'es_upsert_product', 'es', '{}', 'success', 0, 1,"
                " now(), now(), now(), nextval('task_log_seq'), false "
                "FROM generate_series(1, 200000) AS n"
            )
        )
        session.execute(
            text(
                "INSERT INTO task_log (task_id, task_name, queue, payload, status, retry_count,"
                " attempts, deadline_at, created_at, updated_at, seq, held, wait_reason,"
                " next_attempt_at) "
                "SELECT 'plan-held-' || n, 'es_upsert_product', 'es', '{}', 'retrying', 1, 1,"
                " now() + interval '1 day', now(), now(), nextval('task_log_seq'), true,"
                " 'backoff', now() + (n || ' seconds')::interval "
                "FROM generate_series(1, 2000) AS n"
            )
        )
        session.execute(text("ANALYZE task_log"))
    waits = WaitLog(log.sessions)
    stmt = waits.due_statement("es", BACKOFF, utcnow(), 100)
    compiled = stmt.compile(
        dialect=log.sessions().get_bind().dialect, compile_kwargs={"literal_binds": True}
    )
    with log.sessions() as session:
        plan = "\n".join(r[0] for r in session.execute(text(f"EXPLAIN {compiled}")))
        session.execute(text("DELETE FROM task_log WHERE task_id LIKE 'plan-%'"))
        session.commit()
    assert "ix_task_log_held_due" in plan, plan
    assert "Seq Scan" not in plan, plan
