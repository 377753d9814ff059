"""The shared-state exporter reads the task log and Redis as they are, at each scrape."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.db import session_factory
from services.core.guards.gate import breakers
from services.core.observability.exporter import scrape_redis
from services.core.observability.shared_state import SharedStateCollector
from services.core.taskdefs import Queue
from services.core.tasklog import migrate
from services.core.tasklog.models import TaskStatus
from services.core.tasklog.repository import Claim, TaskLogRepository
from services.core.tasklog.waits import WaitLog
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.metrics import Sample, value, values
from tests.support.procs import free_port

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def fresh_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """An empty, migrated task log of its own (the run's database holds other tests' rows)."""
    if request.param == "sqlite":
        yield sqlite_url
        return
    name = f"durable_ss_{uuid.uuid4().hex[:10]}"
    url = create_pg_database(name)
    migrate.upgrade(url)
    yield url
    from services.core import db

    for (_, engine_url), engine in list(db._engines.items()):
        if engine_url == url:
            engine.dispose()
    drop_pg_database(name)


@pytest.fixture
def own(settings: Settings, fresh_url: str) -> Settings:
    """The run's settings with a task log and a Redis prefix of this test only."""
    prefix = f"{settings.redis_key_prefix}ss{uuid.uuid4().hex[:6]}:"
    return settings.model_copy(update={"database_url": fresh_url, "redis_key_prefix": prefix})


def _collect(own: Settings, redis: Redis) -> list[Sample]:
    registry = CollectorRegistry()
    registry.register(
        SharedStateCollector(
            sessions=session_factory(own.database_url),
            redis=redis,
            settings=own,
            breakers=breakers(redis, own),
            clock=lambda: NOW,
        )
    )
    text = generate_latest(registry).decode()
    return [
        Sample(s.name, dict(s.labels), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]


def _task(repo: TaskLogRepository, queue: Queue, *, age_s: float, budget_left_s: float) -> str:
    task_id = str(uuid.uuid4())
    created = NOW - timedelta(seconds=age_s)
    repo.create(
        task_id=task_id,
        task_name=f"t_{queue.value}",
        queue=queue.value,
        payload={},
        deadline_at=NOW + timedelta(seconds=budget_left_s),
        customer_id="c-secret-tenant",
        now=created,
    )
    return task_id


def test_backlog_oldest_age_and_near_deadline_come_from_the_task_log(own: Settings) -> None:
    repo = TaskLogRepository(session_factory(own.database_url))
    es_budget, http_budget = own.es_retry_budget_s, own.http_retry_budget_s
    _task(repo, Queue.ES, age_s=30, budget_left_s=es_budget)
    oldest = _task(repo, Queue.ES, age_s=700, budget_left_s=es_budget - 700)
    claim = repo.claim(oldest, now=NOW)
    assert isinstance(claim, Claim)
    repo.mark_retrying(
        oldest, attempt=claim.attempt, error="x", error_kind="transient", next_attempt_at=NOW
    )
    # Waiting in the log with no broker message (a breaker's, say): counted, marked held.
    waiting = _task(repo, Queue.ES, age_s=60, budget_left_s=es_budget)
    until = NOW + timedelta(seconds=60)
    assert WaitLog(repo.sessions).hold(waiting, reason="backoff", until=until, now=NOW) is None
    done = _task(repo, Queue.ES, age_s=5000, budget_left_s=es_budget)
    repo.update_status(done, TaskStatus.SUCCESS, now=NOW)
    failed = _task(repo, Queue.ES, age_s=9000, budget_left_s=es_budget)
    repo.update_status(failed, TaskStatus.FAILED, now=NOW)
    # Less than 10 % of its budget left: near its deadline.
    close = _task(repo, Queue.HTTP, age_s=http_budget * 0.95, budget_left_s=http_budget * 0.05)
    assert isinstance(repo.claim(close, now=NOW), Claim)

    redis = Redis.from_url(own.redis_url)
    try:
        samples = _collect(own, redis)
    finally:
        redis.close()

    def outstanding(queue: str, status: str, held: str | None = None) -> float:
        name = "durable_queue_outstanding_tasks"
        if held is not None:
            return value(samples, name, queue=queue, status=status, held=held)
        return sum(values(samples, name, queue=queue, status=status))

    assert (outstanding("es", "pending"), outstanding("es", "retrying")) == (2, 1)
    assert (outstanding("es", "pending", "true"), outstanding("es", "pending", "false")) == (1, 1)
    assert outstanding("es", "processing") == 0  # every combination is reported, 0 included
    assert outstanding("http", "processing") == 1
    assert outstanding("maintenance", "pending") == 0
    age = "durable_queue_oldest_outstanding_age_seconds"
    assert value(samples, age, queue="es") == pytest.approx(700)
    assert value(samples, age, queue="http") == pytest.approx(http_budget * 0.95)
    assert value(samples, age, queue="maintenance") == 0
    near = "durable_queue_near_deadline_tasks"
    assert (value(samples, near, queue="es"), value(samples, near, queue="http")) == (0, 1)
    assert value(samples, "durable_queue_retry_budget_seconds", queue="es") == es_budget
    assert value(samples, "durable_exporter_source_up", source="tasklog") == 1
    # Customers are named by the per-customer figures only (their own test is below).
    named = [s for s in samples if "c-secret-tenant" in s.labels.values()]
    assert {s.name for s in named} <= {
        "durable_customer_outstanding_tasks",
        "durable_customer_waiting_tasks",
    }


def test_work_per_customer_shows_the_customers_with_the_most_and_the_rest_together(
    own: Settings,
) -> None:
    own = own.model_copy(update={"fair_share_top_customers": 2})
    repo = TaskLogRepository(session_factory(own.database_url))
    writes = {("es", "big"): 5, ("es", "mid"): 3, ("es", "s1"): 1, ("es", "s2"): 1}
    writes[("http", "s1")] = 1
    for (queue, customer), n in writes.items():
        for _ in range(n):
            repo.create(
                task_id=str(uuid.uuid4()),
                task_name=f"t_{queue}",
                queue=queue,
                payload={},
                deadline_at=NOW + timedelta(hours=1),
                customer_id=customer,
                fair_bound=2,  # past two outstanding, a customer's writes wait their turn
            )
    redis = Redis.from_url(own.redis_url)
    try:
        samples = _collect(own, redis)
    finally:
        redis.close()

    def figures(name: str) -> dict[tuple[str, str], float]:
        return {
            (s.labels["queue"], s.labels["customer"]): s.value for s in samples if s.name == name
        }

    assert figures("durable_customer_outstanding_tasks") == {
        ("es", "big"): 2,
        ("es", "mid"): 2,
        ("es", "(other)"): 2,  # s1 and s2 together
        ("http", "s1"): 1,
        ("http", "(other)"): 0,
        ("maintenance", "(other)"): 0,
    }
    assert figures("durable_customer_waiting_tasks") == {
        ("es", "big"): 3,
        ("es", "mid"): 1,
        ("es", "(other)"): 0,
        ("http", "s1"): 0,
        ("http", "(other)"): 0,
        ("maintenance", "(other)"): 0,
    }


def test_queue_depth_counts_priority_sub_lists_and_unacked_messages(own: Settings) -> None:
    celery = make_celery_app(own)
    redis = Redis.from_url(own.redis_url)
    try:
        celery.send_task("canary_es", kwargs={"payload": {}}, queue="es")
        celery.send_task("canary_es", kwargs={"payload": {}}, queue="es", priority=9)
        celery.send_task("canary_http", kwargs={"payload": {}}, queue="http", countdown=600)
        celery.send_task("canary_http", kwargs={"payload": {}}, queue="http")
        with celery.connection_for_read() as conn:
            channel = conn.default_channel
            # Taken without an ack, as a worker holds a prefetched or countdown message.
            held = [channel.basic_get("http", no_ack=False) for _ in range(2)]
            assert all(m is not None for m in held)
            samples = _collect(own, redis)
            for message in held:
                message.reject(requeue=False)
    finally:
        redis.close()
    ready = "durable_broker_ready_messages"
    assert value(samples, ready, queue="es", priority="0") == 1
    # An LLEN of "es" alone (KEDA's redis trigger) misses this one.
    assert value(samples, ready, queue="es", priority="9") == 1
    assert value(samples, ready, queue="http", priority="0") == 0
    unacked = "durable_broker_unacked_messages"
    assert value(samples, unacked, queue="http", state="delayed") == 1
    assert value(samples, unacked, queue="http", state="reserved") == 1
    assert value(samples, unacked, queue="es", state="reserved") == 0
    assert value(samples, "durable_breaker_state", downstream="elasticsearch") == 0


def test_an_unreachable_source_is_reported_down_and_the_others_still_served(
    own: Settings,
) -> None:
    dead = scrape_redis(
        own.model_copy(
            update={
                "redis_url": f"redis://127.0.0.1:{free_port()}/0",
                "broker_connect_timeout_s": 0.5,
            }
        )
    )
    samples = _collect(own, dead)
    assert value(samples, "durable_exporter_source_up", source="broker") == 0
    assert value(samples, "durable_exporter_source_up", source="tasklog") == 1
    assert not [s for s in samples if s.name == "durable_broker_ready_messages"]
    outstanding = values(samples, "durable_queue_outstanding_tasks", queue="es", status="pending")
    assert outstanding == [0, 0]  # held and not
