"""No message can stop a worker: what it cannot hand to its pool or decode fails as `poison`.

One real es-worker serves this module (one pool process, so a message that stopped it would
stop everything after it). Each poison case checks the whole story: the task ends `failed`
with reason `poison`, the worker stays up and runs the next task, the dead-letter series the
alert reads (`durable_task_dead_lettered_total{reason="poison"}`, promtool-tested in
tests/monitoring) went up on the worker's own endpoint, and the reconciler leaves the task
alone. A task whose delivery killed or hung its pool process POISON_MAX_LOST_ATTEMPTS times
is quarantined the same way, and a redrive after the fix runs it.

Kept in its own module so that no other worker consumes the queue meanwhile.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis

from services.core.celery_app import make_celery_app
from services.core.config import Settings, get_settings
from services.core.operations.redrive import retry_failed
from services.core.search import payloads
from services.core.search.catalog import Operation, kind_of
from services.core.secrecy import Sealer
from services.core.tasklog.models import TaskLog, utcnow
from services.core.tasklog.reconciler import Reconciler
from services.core.tasklog.repository import Claim, TaskLogRepository
from services.core.tracking.runner import OutcomeKind, TaskRunner
from tests.support.flow import effects, enqueuer, send, wait_finished
from tests.support.metrics import scrape, value
from tests.support.procs import Worker, free_port, wait_until
from tests.support.tasks import TEST_EFFECT, trace_key

pytestmark = pytest.mark.slow
MAX_LOST = 2


def nested(depth: int) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    logs = tmp_path_factory.mktemp("poison")
    env = {
        "ES_WORKER_METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(logs / "metrics"),
        "POISON_MAX_LOST_ATTEMPTS": str(MAX_LOST),
        # The hang case: the hard limit kills a hung attempt after 2 s.
        "TASK_SOFT_TIME_LIMIT_S": "1",
        "TASK_TIME_LIMIT_S": "2",
    }
    started = Worker("services.es_worker", "es", logs, env=env, concurrency=1).start()
    yield started
    started.stop()


def _poison_count(worker: Worker, task: str) -> float:
    port = worker.env["ES_WORKER_METRICS_PORT"]
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    return value(
        samples, "durable_task_dead_lettered_total", task=task, queue="es", reason="poison"
    )


def _goes_on(worker: Worker, settings: Settings, pg_repo: TaskLogRepository) -> None:
    """The worker is up, never said it stopped, and runs the next task."""
    task_id, _ = send(settings)
    assert wait_finished(pg_repo, task_id).status == "success"
    assert worker.proc is not None and worker.proc.poll() is None
    assert "Unrecoverable error" not in worker.log()


def _quarantined(pg_repo: TaskLogRepository, task_id: str) -> TaskLog:
    row = wait_finished(pg_repo, task_id, timeout_s=60)
    assert (row.status, row.failure_reason, row.error_kind) == ("failed", "poison", "permanent")
    return row


def _left_alone_by_the_reconciler(
    settings: Settings, pg_repo: TaskLogRepository, task_id: str
) -> None:
    reconciler = Reconciler(
        sessions=pg_repo.sessions,
        celery=make_celery_app(settings),
        redis=Redis.from_url(settings.redis_url),
        key_prefix=settings.redis_key_prefix,
        stale_s=0,
        processing_stale_s=0,
    )
    report = reconciler.run_once(now=utcnow() + timedelta(days=1))
    assert task_id not in report.republished


def test_a_message_the_worker_cannot_hand_to_its_pool_is_poison_and_the_worker_goes_on(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository
) -> None:
    # What the API accepted before it refused depth 600 (or code that enqueues without the
    # API): pickling it to the pool process exceeds Python's recursion limit.
    before = _poison_count(worker, "es_upsert_product")
    # (The facade's builders refuse such data now: the payload is built as they once did.)
    payload = payloads.upsert("c1", "p-deep", {}, with_embedding=False, version=None)
    payload["data"] = nested(600)
    accepted = enqueuer(settings).enqueue(kind_of("products").task_name(Operation.UPSERT), payload)
    row = _quarantined(pg_repo, accepted.task_id)
    assert row.error_message is not None and "RecursionError" in row.error_message
    assert row.attempts == 0  # no attempt ran: the message never reached the pool
    assert _poison_count(worker, "es_upsert_product") == before + 1
    _goes_on(worker, settings, pg_repo)
    _left_alone_by_the_reconciler(settings, pg_repo, accepted.task_id)


def _envelope(task_id: str | None, body: bytes, content_type: str) -> str:
    """A kombu message on Redis as a producer would write it, with the given body."""
    headers: dict[str, Any] = {}
    if task_id is not None:
        headers = {"lang": "py", "task": TEST_EFFECT.name, "id": task_id, "root_id": task_id}
        headers.update(retries=0, timelimit=[None, None], argsrepr="", kwargsrepr="")
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": content_type,
            "headers": headers,
            "properties": {
                "correlation_id": task_id or "none",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": "es"},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


UNDECODABLE = {
    # A pickle: refused by accept_content=json, never unpickled.
    "pickle": (
        b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94.",
        "application/x-python-serialize",
    ),
    "broken JSON": (b'[[], {"payload": {"key": ', "application/json"),
    "JSON of the wrong shape": (
        b'"a string where [args, kwargs, embed] belongs"',
        "application/json",
    ),
}


@pytest.mark.parametrize("case", sorted(UNDECODABLE))
def test_a_message_that_cannot_be_decoded_is_poison_and_the_worker_goes_on(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis, case: str
) -> None:
    body, content_type = UNDECODABLE[case]
    task_id = str(uuid.uuid4())
    pg_repo.create(
        task_id=task_id,
        task_name=TEST_EFFECT.name,
        queue="es",
        payload={"key": uuid.uuid4().hex},
        deadline_at=utcnow() + timedelta(hours=1),
    )
    before = _poison_count(worker, TEST_EFFECT.name)
    redis.lpush(f"{settings.redis_key_prefix}es", _envelope(task_id, body, content_type))
    _quarantined(pg_repo, task_id)
    assert _poison_count(worker, TEST_EFFECT.name) == before + 1
    _goes_on(worker, settings, pg_repo)
    _left_alone_by_the_reconciler(settings, pg_repo, task_id)
    # Logged without the body: payloads never reach the logs.
    assert base64.b64encode(body).decode() not in worker.log()


def test_a_message_without_a_readable_task_is_dropped_counted_and_logged(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis
) -> None:
    before = _poison_count(worker, "unknown")
    marker = f"secret-customer-data-{uuid.uuid4().hex}".encode()
    redis.lpush(
        f"{settings.redis_key_prefix}es", _envelope(None, b"{" + marker, "application/json")
    )
    wait_until(lambda: _poison_count(worker, "unknown") == before + 1, 30, what="the count")
    _goes_on(worker, settings, pg_repo)
    assert marker.decode() not in worker.log()
    assert redis.llen(f"{settings.redis_key_prefix}es") == 0


@pytest.mark.parametrize("how", ["kill_until_fixed", "hang_until_fixed"])
def test_a_task_that_killed_or_hung_its_worker_n_times_is_quarantined_then_redriven(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis, how: str
) -> None:
    before = _poison_count(worker, TEST_EFFECT.name)
    task_id, key = send(settings, **{how: True})
    row = _quarantined(pg_repo, task_id)
    assert row.attempts == MAX_LOST and row.lost_attempts == MAX_LOST
    assert redis.llen(trace_key("started", key)) == MAX_LOST
    assert _poison_count(worker, TEST_EFFECT.name) == before + 1
    _goes_on(worker, settings, pg_repo)
    _left_alone_by_the_reconciler(settings, pg_repo, task_id)
    # After the fix, a redrive runs it: a new task, counted from zero.
    redis.set(trace_key("fixed", key), 1)
    sealer = Sealer(get_settings().secrets_key.get_secret_value())
    retried = retry_failed(enqueuer(settings), sealer, row)
    assert wait_finished(pg_repo, retried.task_id).status == "success"
    assert effects(redis, key) == [retried.task_id]


@pytest.mark.parametrize(
    "item", ["not a message at all", '{"body": "%%% not base64", "properties": {}}', "[1, 2]"]
)
def test_an_item_that_is_no_message_at_all_does_not_stop_the_worker(
    worker: Worker, settings: Settings, pg_repo: TaskLogRepository, redis: Redis, item: str
) -> None:
    before = _poison_count(worker, "unknown")
    redis.lpush(f"{settings.redis_key_prefix}es", item)
    wait_until(lambda: _poison_count(worker, "unknown") == before + 1, 30, what="the count")
    _goes_on(worker, settings, pg_repo)


def test_a_task_whose_deliveries_died_with_their_worker_n_times_is_quarantined_at_its_claim(
    settings: Settings, pg_repo: TaskLogRepository
) -> None:
    # The whole worker killed (SIGKILL, out of memory) mid-task leaves no record but the
    # lapsed lease; the next delivery's claim counts it, and the Nth does not run it.
    own = settings.model_copy(update={"poison_max_lost_attempts": MAX_LOST})
    now = utcnow()
    runner = TaskRunner(
        repo=pg_repo,
        sealer=Sealer(own.secrets_key.get_secret_value()),
        settings=own,
        clock=lambda: now + timedelta(hours=MAX_LOST),
    )
    task_id = str(uuid.uuid4())
    pg_repo.create(
        task_id=task_id,
        task_name=TEST_EFFECT.name,
        queue="es",
        payload={},
        deadline_at=utcnow() + timedelta(days=1),
    )
    ran: list[str] = []
    for lost in range(MAX_LOST):
        claim = pg_repo.claim(task_id, now=now + timedelta(hours=lost), lease_s=60)
        assert isinstance(claim, Claim) and claim.lost_attempts == lost  # then it "dies"
    outcome = runner.run(TEST_EFFECT, task_id, {}, lambda ctx, p: ran.append(ctx.task_id))
    assert (outcome.kind, ran) == (OutcomeKind.FAILED, [])
    row = _quarantined(pg_repo, task_id)
    assert row.lost_attempts == MAX_LOST
