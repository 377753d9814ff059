import random
from datetime import UTC, datetime, timedelta

from services.core.retry import GiveUpReason, RetryPolicy, backoff_delay, decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(base_s=1.0, cap_s=600.0)


def test_full_jitter_stays_under_the_capped_exponential_ceiling() -> None:
    rng = random.Random(7)
    for n in range(20):
        ceiling = min(600.0, 2.0**n)
        draws = [backoff_delay(n, POLICY, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(draws) < ceiling * 0.2 and max(draws) > ceiling * 0.8


def test_huge_retry_numbers_do_not_overflow() -> None:
    assert 0 <= backoff_delay(10_000, POLICY, random.Random(1)) <= 600.0


def test_retries_until_the_deadline_and_not_after() -> None:
    deadline = NOW + timedelta(seconds=30)
    early = decide(now=NOW, deadline=deadline, retries_done=50, policy=POLICY)
    assert early.retry and early.delay_s <= 30
    late = decide(now=deadline, deadline=deadline, retries_done=1, policy=POLICY)
    assert not late.retry and late.give_up is GiveUpReason.DEADLINE_EXHAUSTED


def test_delay_is_clamped_to_the_time_left() -> None:
    deadline = NOW + timedelta(seconds=2)
    decision = decide(
        now=NOW, deadline=deadline, retries_done=30, policy=POLICY, rng=random.Random(3)
    )
    assert decision.retry and decision.delay_s <= 2.0


def test_count_limit_applies_on_top_of_the_deadline() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=600.0, max_retries=5)
    deadline = NOW + timedelta(hours=24)
    assert decide(now=NOW, deadline=deadline, retries_done=4, policy=policy).retry
    stop = decide(now=NOW, deadline=deadline, retries_done=5, policy=policy)
    assert stop.give_up is GiveUpReason.MAX_RETRIES_EXHAUSTED


def test_retry_after_is_honoured_within_the_cap() -> None:
    deadline = NOW + timedelta(hours=1)
    waited = decide(now=NOW, deadline=deadline, retries_done=0, policy=POLICY, retry_after_s=42)
    assert waited.delay_s >= 42
    capped = decide(now=NOW, deadline=deadline, retries_done=0, policy=POLICY, retry_after_s=9999)
    assert capped.delay_s == 600.0
