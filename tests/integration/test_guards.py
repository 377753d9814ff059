"""Circuit breakers and cluster-wide rate limits on the run's real Redis.

Each test works under a key prefix of its own, so it neither sees nor trips the breakers the
other tests' workers share.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from redis import Redis

from services.core.config import Settings
from services.core.errors import PermanentError, TransientError
from services.core.guards.breaker import Breaker, BreakerCollector, BreakerConfig
from services.core.guards.gate import Gate
from services.core.guards.ratelimit import RateLimiter, RateLimitSyntaxError, parse_limits
from services.core.secrecy import Sealer
from services.core.taskdefs import Downstream, Queue, TaskSpec
from services.core.tasklog.models import utcnow
from services.core.tasklog.repository import Refusal, TaskLogRepository
from services.core.tracking.runner import OutcomeKind, TaskContext, TaskRunner

ES = Downstream.ELASTICSEARCH
SPEC = TaskSpec(
    "guarded_write",
    Queue.ES,
    downstreams=(ES,),
    optional_downstreams=(("with_embedding", Downstream.EMBEDDINGS),),
)


@pytest.fixture
def own(settings: Settings) -> Settings:
    """The run's settings under a key prefix of this test alone."""
    prefix = f"{settings.redis_key_prefix}guards-{uuid.uuid4().hex[:8]}:"
    return settings.model_copy(update={"redis_key_prefix": prefix})


@pytest.fixture
def client(own: Settings) -> Redis:
    return Redis.from_url(own.redis_url)


def _breaker(client: Redis, own: Settings, **config: Any) -> Breaker:
    return Breaker(client, own.redis_key_prefix, ES, BreakerConfig(**config))


def test_a_run_of_failures_opens_the_breaker_and_a_probe_closes_it(
    client: Redis, own: Settings
) -> None:
    breaker = _breaker(client, own, threshold=3, open_s=0.3, open_max_s=10)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.admit().allowed
    assert breaker.state()["recent_failures"] == 2

    breaker.record_failure()
    parked = breaker.admit()
    assert not parked.allowed and parked.state == "open"
    assert 0 < parked.wait_s <= 0.3
    assert breaker.state()["state"] == "open"

    time.sleep(0.35)  # past the open period (a Redis key expiry, not a clock of ours)
    probe = breaker.admit()
    assert probe.allowed and probe.probe
    # While the probe runs, everyone else is parked.
    waiting = breaker.admit()
    assert not waiting.allowed and waiting.state == "half_open" and waiting.wait_s > 0

    breaker.record_success()
    assert breaker.admit().allowed and not breaker.admit().probe
    assert breaker.state() == {
        "state": "closed",
        "recent_failures": 0,
        "times_opened": 0,
        "open_for_s": 0.0,
    }


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_clean_breaker_is_trusted_for_its_memo_and_no_longer(
    client: Redis, own: Settings
) -> None:
    clock = Clock()
    config = BreakerConfig(threshold=1, open_s=30, clean_memo_s=1.0)
    here = Breaker(client, own.redis_key_prefix, ES, config, clock=clock)
    elsewhere = Breaker(Redis.from_url(own.redis_url), own.redis_key_prefix, ES, config)
    assert here.admit().allowed  # found closed, no failure counted: trusted for 1 s

    elsewhere.record_failure()  # another worker opens it
    clock.now += 0.9
    assert here.admit().allowed  # within the memo: not asked again
    clock.now += 0.2
    parked = here.admit()  # the memo is over: the open breaker is obeyed
    assert not parked.allowed and parked.state == "open"


def test_a_success_within_the_memo_leaves_redis_alone_and_one_after_it_clears_failures(
    client: Redis, own: Settings
) -> None:
    clock = Clock()
    config = BreakerConfig(threshold=5, clean_memo_s=1.0)
    here = Breaker(client, own.redis_key_prefix, ES, config, clock=clock)
    elsewhere = Breaker(Redis.from_url(own.redis_url), own.redis_key_prefix, ES, config)
    assert here.admit().allowed
    elsewhere.record_failure()
    here.record_success()  # within the memo: nothing sent
    assert here.state()["recent_failures"] == 1
    clock.now += 1.1
    assert here.admit().allowed  # closed, but a failure is counted: no memo now
    here.record_success()
    assert here.state()["recent_failures"] == 0


def test_a_failure_seen_by_the_process_ends_its_memo(client: Redis, own: Settings) -> None:
    clock = Clock()
    config = BreakerConfig(threshold=1, open_s=30, clean_memo_s=60.0)
    here = Breaker(client, own.redis_key_prefix, ES, config, clock=clock)
    assert here.admit().allowed
    here.record_failure()  # opens it
    assert not here.admit().allowed  # asked at once, memo or not


def test_a_failed_probe_opens_the_breaker_for_twice_as_long(client: Redis, own: Settings) -> None:
    breaker = _breaker(client, own, threshold=1, open_s=0.3, open_max_s=0.5)
    breaker.record_failure()
    first = breaker.admit().wait_s
    time.sleep(0.35)
    assert breaker.admit().probe
    breaker.record_failure()  # the probe failed
    second = breaker.admit()
    assert not second.allowed and second.wait_s > first  # 0.5 s, capped from 0.6 s
    assert second.wait_s <= 0.5
    assert breaker.state()["times_opened"] == 2
    # A failure reported while open (an attempt that started before) changes nothing.
    breaker.record_failure()
    assert breaker.state()["times_opened"] == 2


def test_failures_further_apart_than_the_window_do_not_add_up(client: Redis, own: Settings) -> None:
    breaker = _breaker(client, own, threshold=2, window_s=0.2)
    breaker.record_failure()
    time.sleep(0.3)
    breaker.record_failure()
    assert breaker.admit().allowed
    assert breaker.state()["recent_failures"] == 1


def test_breakers_are_shared_through_redis(client: Redis, own: Settings) -> None:
    # Two clients stand for two worker pods: one trips the breaker, the other sees it open.
    other = Redis.from_url(own.redis_url)
    first = _breaker(client, own, threshold=2)
    second = _breaker(other, own, threshold=2)
    first.record_failure()
    second.record_failure()
    assert not first.admit().allowed and not second.admit().allowed
    samples = {
        (m.name, s.labels["downstream"]): s.value
        for m in BreakerCollector({ES: second}).collect()
        for s in m.samples
    }
    assert samples[("durable_breaker_state", "elasticsearch")] == 2
    other.close()


def test_rate_limits_parse_with_clear_errors() -> None:
    limits = parse_limits(" es_upsert_product=10/s, elasticsearch = 300/m ,embeddings=2.5/h")
    assert limits["es_upsert_product"].interval_ms == 100
    assert limits["elasticsearch"].interval_ms == 200
    assert parse_limits("") == {}
    for bad, says in [
        ("es_upsert_product=10", "NAME=COUNT/s"),
        ("x=0/s", "more than 0"),
        ("a=1/s,a=2/s", "given twice"),
    ]:
        with pytest.raises(RateLimitSyntaxError, match=says):
            parse_limits(bad)
    with pytest.raises(ValidationError, match="NAME=COUNT"):
        Settings(rate_limits="elasticsearch=fast")


def test_a_rate_limit_holds_across_clients(own: Settings) -> None:
    # 60 attempts from 6 threads, each with its own connection, against 20/s with a burst of
    # 20: the reserved start times must never put more than 20 + 20/s x t attempts in the
    # first t seconds, whichever client asked.
    limits = parse_limits("guarded_write=20/s")
    starts: list[float] = []
    lock = threading.Lock()

    def draw() -> None:
        redis = Redis.from_url(own.redis_url)
        limiter = RateLimiter(redis, own.redis_key_prefix, limits, max_wait_s=60)
        for _ in range(10):
            grant = limiter.acquire("guarded_write")
            assert grant is not None and grant.reserved
            with lock:
                # On Redis' clock, which reserved the slot: no client latency in it.
                starts.append(grant.starts_at_ms / 1000)
        redis.close()

    threads = [threading.Thread(target=draw) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(starts) == 60
    starts.sort()
    origin = starts[0]
    for index, start in enumerate(starts):
        # Attempt number index+1 may start once index+1 <= 20 + 20 * elapsed (+ 1 ms: Redis'
        # clock is read in whole milliseconds).
        assert index + 1 <= 20 + 20 * (start - origin + 0.001), (index, start - origin)
    # The budget was spent: the last attempts had to wait about (60 - 20) / 20 = 2 s.
    assert starts[-1] - origin >= 1.9


def test_a_wait_longer_than_allowed_reserves_nothing(client: Redis, own: Settings) -> None:
    limiter = RateLimiter(client, own.redis_key_prefix, parse_limits("x=2/s"), max_wait_s=0)
    assert limiter.acquire("unlimited") is None
    first = [limiter.acquire("x") for _ in range(2)]
    assert all(g is not None and g.reserved and g.wait_s == 0 for g in first)
    refused = [limiter.acquire("x") for _ in range(5)]
    assert all(g is not None and not g.reserved and 0 < g.wait_s <= 0.5 for g in refused)


def _runner(repo: TaskLogRepository, own: Settings, sleeps: list[float]) -> TaskRunner:
    return TaskRunner(
        repo=repo,
        sealer=Sealer(own.secrets_key.get_secret_value()),
        settings=own,
        gate=Gate(Redis.from_url(own.redis_url), own, rng=random.Random(1)),
        sleep=sleeps.append,
    )


def _accepted(repo: TaskLogRepository, payload: dict[str, Any], hours: float = 1) -> str:
    task_id = str(uuid.uuid4())
    repo.create(
        task_id=task_id,
        task_name=SPEC.name,
        queue=SPEC.queue,
        payload=payload,
        deadline_at=utcnow() + timedelta(hours=hours),
    )
    return task_id


def test_an_open_breaker_holds_tasks_in_the_log_without_spending_attempts(
    pg_repo: TaskLogRepository, own: Settings
) -> None:
    own = own.model_copy(
        update={"breaker_failure_threshold": 2, "breaker_open_s": 20.0, "breaker_open_max_s": 20.0}
    )
    runner = _runner(pg_repo, own, [])
    ran: list[str] = []

    def down(ctx: TaskContext, payload: dict[str, Any]) -> None:
        ran.append(ctx.task_id)
        raise TransientError("connection refused", downstream=ES)

    failing = [_accepted(pg_repo, {}) for _ in range(2)]
    for task_id in failing:
        assert runner.run(SPEC, task_id, {}, down).kind is OutcomeKind.RETRY

    parked_id = _accepted(pg_repo, {})
    outcome = runner.run(SPEC, parked_id, {}, down)
    # Held in the log, no broker message: the releaser publishes it after the probe.
    assert outcome.kind is OutcomeKind.HELD
    assert ran == failing  # the held task's body never ran
    row = pg_repo.get_by_task_id(parked_id)
    assert row is not None and row.status == "pending"
    assert (row.held, row.wait_reason) == (True, "breaker:elasticsearch")
    assert (row.attempts, row.retry_count) == (0, 0)
    assert row.next_attempt_at is not None
    assert 20 * 0.9 < (row.next_attempt_at - utcnow()).total_seconds() <= 20 * 1.2 + 0.5

    # A task too close to its deadline is not parked past it: it runs (and retries once more).
    late_id = _accepted(pg_repo, {}, hours=5 / 3600)
    assert runner.run(SPEC, late_id, {}, down).kind is OutcomeKind.RETRY
    # A task that needs only another downstream is not held back by this one.
    other = TaskSpec("other_write", Queue.HTTP, downstreams=(Downstream.CHATBOT,))
    other_id = _accepted(pg_repo, {})
    assert runner.run(other, other_id, {}, lambda ctx, p: "ok").kind is OutcomeKind.SUCCESS


def test_the_embeddings_breaker_holds_back_only_tasks_that_embed(
    pg_repo: TaskLogRepository, own: Settings
) -> None:
    own = own.model_copy(update={"breaker_failure_threshold": 1})
    runner = _runner(pg_repo, own, [])

    def no_embeddings(ctx: TaskContext, payload: dict[str, Any]) -> None:
        raise TransientError("embeddings 503", downstream=Downstream.EMBEDDINGS)

    embed = {"with_embedding": True}
    assert runner.run(SPEC, _accepted(pg_repo, embed), embed, no_embeddings).kind == "retry"
    assert runner.run(SPEC, _accepted(pg_repo, embed), embed, no_embeddings).kind == "held"
    plain = {"with_embedding": False}
    assert runner.run(SPEC, _accepted(pg_repo, plain), plain, lambda c, p: 1).kind == "success"


def test_a_permanent_answer_proves_the_downstream_is_up(
    pg_repo: TaskLogRepository, own: Settings, client: Redis
) -> None:
    own = own.model_copy(update={"breaker_failure_threshold": 2})
    runner = _runner(pg_repo, own, [])

    def transient(ctx: TaskContext, payload: dict[str, Any]) -> None:
        raise TransientError("503", downstream=ES)

    def rejected(ctx: TaskContext, payload: dict[str, Any]) -> None:
        raise PermanentError("400 mapper_parsing_exception", downstream=ES)

    runner.run(SPEC, _accepted(pg_repo, {}), {}, transient)
    runner.run(SPEC, _accepted(pg_repo, {}), {}, rejected)
    runner.run(SPEC, _accepted(pg_repo, {}), {}, transient)
    # The 400 broke the run of failures: one failure since, below the threshold of 2.
    assert _breaker(client, own).state()["state"] == "closed"


def test_rate_limited_attempts_sleep_briefly_or_park(
    pg_repo: TaskLogRepository, own: Settings
) -> None:
    own = own.model_copy(update={"rate_limits": "guarded_write=2/s", "rate_limit_max_wait_s": 0.6})
    sleeps: list[float] = []
    runner = _runner(pg_repo, own, sleeps)
    kinds = [runner.run(SPEC, _accepted(pg_repo, {}), {}, lambda c, p: 1).kind for _ in range(5)]
    # A burst of 2, then a slot 0.5 s later that is worth sleeping for, then longer waits.
    assert kinds[:3] == ["success"] * 3
    assert kinds[3:] == ["parked"] * 2
    assert len(sleeps) == 1 and 0.3 < sleeps[0] <= 0.5


def test_a_delivery_the_log_refuses_to_put_off_does_not_run(
    pg_repo: TaskLogRepository, own: Settings
) -> None:
    own = own.model_copy(update={"breaker_failure_threshold": 1, "breaker_open_s": 20.0})
    runner = _runner(pg_repo, own, [])
    ran: list[str] = []

    def down(ctx: TaskContext, payload: dict[str, Any]) -> None:
        ran.append(ctx.task_id)
        raise TransientError("connection refused", downstream=ES)

    runner.run(SPEC, _accepted(pg_repo, {}), {}, down)  # opens the breaker
    # Another delivery runs this task under a live lease when a duplicate arrives: the gate
    # says wait, the log refuses to put off a running task, and the duplicate must not run
    # (past the open breaker, beside the live attempt).
    busy = _accepted(pg_repo, {})
    assert not isinstance(pg_repo.claim(busy, lease_s=60, owner="elsewhere:1"), Refusal)
    ran.clear()
    assert runner.run(SPEC, busy, {}, down).kind is OutcomeKind.BUSY
    assert ran == []
    row = pg_repo.get_by_task_id(busy)
    assert row is not None and (row.status, row.attempts, row.held) == ("processing", 1, False)


def test_a_long_rate_limit_wait_is_held_in_the_log_not_in_a_countdown(
    pg_repo: TaskLogRepository, own: Settings
) -> None:
    # An hourly limit: a countdown of up to an hour would outlive the visibility timeout and
    # be delivered again while a worker still holds it.
    own = own.model_copy(update={"rate_limits": "guarded_write=1/h", "long_wait_s": 10.0})
    runner = _runner(pg_repo, own, [])
    assert runner.run(SPEC, _accepted(pg_repo, {}), {}, lambda c, p: 1).kind == "success"
    waiting = _accepted(pg_repo, {}, hours=3)
    outcome = runner.run(SPEC, waiting, {}, lambda c, p: 1)
    assert outcome.kind is OutcomeKind.HELD and outcome.delay_s == 0
    row = pg_repo.get_by_task_id(waiting)
    assert row is not None and (row.held, row.wait_reason) == (True, "rate_limit")
    assert row.next_attempt_at is not None
    assert (row.next_attempt_at - utcnow()).total_seconds() > 3000
