"""The gate every tracked attempt passes before it runs: breakers first, then rate limits."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from services.core import metrics
from services.core.config import Settings
from services.core.errors import ErrorKind, TaskError
from services.core.guards.breaker import Breaker, BreakerConfig, BreakerState
from services.core.guards.ratelimit import RateLimiter, parse_limits
from services.core.taskdefs import Downstream, TaskSpec

log = logging.getLogger("services.guards")


@dataclass(frozen=True)
class Verdict:
    """Run after sleeping `wait_s`, or park the task for `wait_s` (`reason` says why)."""

    run: bool
    wait_s: float = 0.0
    reason: str = ""


def breaker_config(settings: Settings) -> BreakerConfig:
    """The breaker thresholds of the settings."""
    return BreakerConfig(
        threshold=settings.breaker_failure_threshold,
        window_s=settings.breaker_window_s,
        open_s=settings.breaker_open_s,
        open_max_s=settings.breaker_open_max_s,
        probe_timeout_s=settings.breaker_probe_timeout_s,
        clean_memo_s=settings.breaker_clean_memo_s,
    )


def breakers(redis: Redis, settings: Settings) -> dict[Downstream, Breaker]:
    """One breaker per downstream."""
    config = breaker_config(settings)
    return {d: Breaker(redis, settings.redis_key_prefix, d, config) for d in Downstream}


class Gate:
    """Admits attempts and tells the breakers how the downstreams answered.

    Redis being unreachable opens the gate rather than closing it: the guards protect the
    downstreams, and a task that cannot check them is better run than stuck.
    """

    def __init__(self, redis: Redis, settings: Settings, rng: random.Random | None = None):
        self._settings = settings
        self._rng = rng or random.Random()
        self._breakers = breakers(redis, settings) if settings.breaker_enabled else {}
        self._limiter = RateLimiter(
            redis,
            settings.redis_key_prefix,
            parse_limits(settings.rate_limits),
            settings.rate_limit_max_wait_s,
        )

    def admit(self, spec: TaskSpec, payload: dict[str, object]) -> Verdict:
        """Whether an attempt of `spec` with `payload` runs now."""
        downstreams = spec.downstreams_for(payload)
        try:
            for downstream in downstreams:
                breaker = self._breakers.get(downstream)
                if breaker is None:
                    continue
                admission = breaker.admit()
                if not admission.allowed:
                    return Verdict(
                        False,
                        self._park_delay(admission.state, admission.wait_s),
                        f"breaker:{downstream.value}",
                    )
            wait_s = 0.0
            for name in (spec.name, *downstreams):
                grant = self._limiter.acquire(name)
                if grant is None:
                    continue
                if not grant.reserved:
                    return Verdict(
                        False, grant.wait_s * self._rng.uniform(1.0, 1.2), f"rate_limit:{name}"
                    )
                metrics.RATE_LIMIT_WAIT.labels(name).observe(grant.wait_s)
                wait_s = max(wait_s, grant.wait_s)
        except (RedisError, OSError) as exc:
            log.warning("guards unreachable; attempt admitted", extra={"error": type(exc).__name__})
            return Verdict(True)
        return Verdict(True, wait_s)

    def _park_delay(self, state: BreakerState, left_s: float) -> float:
        if state is BreakerState.OPEN:
            # Spread the parked tasks over a little more than the rest of the open period.
            return left_s * self._rng.uniform(1.0, 1.2) + self._rng.uniform(0.0, 0.5)
        # Half-open: a probe is running; come back soon, it usually answers quickly.
        short = min(left_s, max(1.0, self._settings.breaker_open_s / 4))
        return short * self._rng.uniform(1.0, 1.5)

    def report(self, spec: TaskSpec, payload: dict[str, object], exc: BaseException | None) -> None:
        """Feed the breakers with how an attempt ended."""
        if not self._breakers:
            return
        try:
            if exc is None:
                for downstream in spec.downstreams_for(payload):
                    self._breakers[downstream].record_success()
            elif isinstance(exc, TaskError) and exc.downstream is not None:
                breaker = self._breakers[exc.downstream]
                if exc.kind is ErrorKind.TRANSIENT:
                    breaker.record_failure()
                else:
                    breaker.record_success()
        except (RedisError, OSError) as exc_redis:
            log.warning("breaker state not recorded", extra={"error": type(exc_redis).__name__})

    def states(self) -> dict[str, dict[str, object]]:
        """Every breaker's state, by downstream."""
        return {d.value: b.state() for d, b in self._breakers.items()}
