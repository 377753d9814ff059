"""Circuit breakers per downstream, shared by every worker through Redis.

States: closed (tasks run), open (tasks are parked until the open period ends), half-open
(the open period ended: one task runs as the probe, the others are parked a little longer).
A run of `threshold` transient failures (none older than `window_s` apart) opens the breaker;
the probe's success closes it, its failure opens it again for twice as long, up to `open_max_s`.

Each transition is one Lua script, so concurrent workers cannot interleave halfway through
one. Any answer from the downstream that is not a transient failure counts as a success: a
400 from Elasticsearch proves it is up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from prometheus_client import Counter, Metric
from prometheus_client.core import GaugeMetricFamily
from redis import Redis
from redis.exceptions import RedisError

from services.core.taskdefs import Downstream

log = logging.getLogger("services.breaker")

TRANSITIONS = Counter(
    "durable_breaker_transitions_total",
    "Circuit breaker state changes, by downstream and new state",
    ["downstream", "state"],
)

# KEYS: failures, open, trips, probe. ARGV: threshold, window_ms, open_ms, open_max_ms, keep_ms.
# Returns 0 (no change), 1 (opened from closed), 2 (opened again after a failed probe),
# 3 (already open).
_FAILURE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 3 end
local trips = tonumber(redis.call('GET', KEYS[3]) or '0')
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if trips == 0 and n < tonumber(ARGV[1]) then return 0 end
trips = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local open_ms = math.min(tonumber(ARGV[3]) * 2 ^ math.min(trips - 1, 30), tonumber(ARGV[4]))
redis.call('SET', KEYS[2], '1', 'PX', math.floor(open_ms))
redis.call('DEL', KEYS[1], KEYS[4])
if trips == 1 then return 1 end
return 2
"""

# KEYS: failures, open, trips, probe. Returns 1 if the breaker was open or half-open.
_SUCCESS = """
local tripped = redis.call('EXISTS', KEYS[3])
if tripped == 1 or redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
end
return tripped
"""

# KEYS: failures, open, trips, probe. ARGV: probe_ms.
# Returns {state, ms}: {'closed', 0}, {'clean', 0} (closed, no failure counted),
# {'open', ms left}, {'probe', 0} (this caller probes), {'half_open', ms left of the probe}.
_ADMIT = """
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {'open', left} end
if redis.call('EXISTS', KEYS[3]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'clean', 0} end
  return {'closed', 0}
end
if redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[1]) then return {'probe', 0} end
return {'half_open', math.max(redis.call('PTTL', KEYS[4]), 0)}
"""


class BreakerState(StrEnum):
    """What a breaker lets through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Admission:
    """A breaker's answer to one task: run it (maybe as the probe) or park it for `wait_s`."""

    allowed: bool
    probe: bool = False
    wait_s: float = 0.0
    state: BreakerState = BreakerState.CLOSED


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds and periods shared by every breaker."""

    threshold: int = 5
    window_s: float = 60.0
    open_s: float = 30.0
    open_max_s: float = 300.0
    probe_timeout_s: float = 60.0
    # How long a process trusts a breaker it found closed with no failure counted (0: ask
    # Redis every time); see Breaker.admit.
    clean_memo_s: float = 0.0


class Breaker:
    """The breaker of one downstream."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        downstream: Downstream,
        config: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.downstream = downstream
        self._clock = clock
        # Until then this process takes the breaker for closed with no failure counted.
        self._clean_until = 0.0
        self._redis = redis
        self._config = config
        base = f"{prefix}breaker:{downstream.value}:"
        self._keys = [base + part for part in ("failures", "open", "trips", "probe")]
        self._failure = redis.register_script(_FAILURE)
        self._success = redis.register_script(_SUCCESS)
        self._admit = redis.register_script(_ADMIT)

    def _clean(self) -> bool:
        return self._clock() < self._clean_until

    def admit(self) -> Admission:
        """Whether a task for this downstream may run now.

        A breaker found closed with no failure counted is taken as such for `clean_memo_s`
        without asking Redis again: two Redis round trips per attempt (this one and the
        success report) are a large share of a short task. The price is bounded by the memo:
        a breaker another process opened is obeyed here up to `clean_memo_s` late (attempts
        admitted meanwhile fail and retry as they would have had they started a moment
        earlier), and a failure another process counted meanwhile is cleared by this
        process's successes only after the memo ends. A failure seen here ends the memo.
        """
        if self._clean():
            return Admission(True)
        probe_ms = int(self._config.probe_timeout_s * 1000)
        state, ms = self._admit(keys=self._keys, args=[probe_ms])
        state = state.decode() if isinstance(state, bytes) else str(state)
        if state == "clean":
            self._clean_until = self._clock() + self._config.clean_memo_s
            return Admission(True)
        if state == "closed":
            return Admission(True)
        if state == "probe":
            log.info(
                "breaker half-open: this attempt probes", extra={"downstream": self.downstream}
            )
            return Admission(True, probe=True, state=BreakerState.HALF_OPEN)
        if state == "open":
            return Admission(False, wait_s=int(ms) / 1000, state=BreakerState.OPEN)
        return Admission(False, wait_s=int(ms) / 1000, state=BreakerState.HALF_OPEN)

    def record_failure(self) -> None:
        """A transient failure of the downstream."""
        self._clean_until = 0.0
        c = self._config
        changed = self._failure(
            keys=self._keys,
            args=[
                c.threshold,
                int(c.window_s * 1000),
                int(c.open_s * 1000),
                int(c.open_max_s * 1000),
                # The trip count outlives any open period, so a flapping downstream keeps
                # its long open periods; a success forgets it.
                int(max(c.open_max_s * 4, 3600) * 1000),
            ],
        )
        if changed in (1, 2):
            TRANSITIONS.labels(self.downstream.value, BreakerState.OPEN).inc()
            log.warning(
                "breaker opened" if changed == 1 else "breaker probe failed; open again",
                extra={"downstream": self.downstream.value},
            )

    def record_success(self) -> None:
        """An answer from the downstream that was not a transient failure."""
        if self._clean():
            return  # nothing to clear: no failure counted when this process last looked
        if self._success(keys=self._keys) == 1:
            TRANSITIONS.labels(self.downstream.value, BreakerState.CLOSED).inc()
            log.warning("breaker closed", extra={"downstream": self.downstream.value})

    def releasable(self) -> int | None:
        """How many waiting tasks may be sent its way now: None any, 0 none, 1 (the probe).

        Read-only: the task sent as the probe claims the probe slot itself when it runs.
        """
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.pttl(self._keys[1])
            pipe.exists(self._keys[2])
            pipe.exists(self._keys[3])
            open_ms, tripped, probing = pipe.execute()
        if open_ms is not None and open_ms > 0:
            return 0
        if not tripped:
            return None
        return 0 if probing else 1

    def state(self) -> dict[str, object]:
        """The breaker as health checks and metrics show it (read-only)."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys[0])
            pipe.pttl(self._keys[1])
            pipe.get(self._keys[2])
            failures, open_ms, trips = pipe.execute()
        if open_ms is not None and open_ms > 0:
            state = BreakerState.OPEN
        elif trips is not None:
            state = BreakerState.HALF_OPEN
        else:
            state = BreakerState.CLOSED
        return {
            "state": state.value,
            "recent_failures": int(failures or 0),
            "times_opened": int(trips or 0),
            "open_for_s": round(max(open_ms or 0, 0) / 1000, 3),
        }


STATE_VALUES = {
    BreakerState.CLOSED.value: 0,
    BreakerState.HALF_OPEN.value: 1,
    BreakerState.OPEN.value: 2,
}


class BreakerCollector:
    """Prometheus collector of the breakers' states, read from Redis at each scrape.

    The state lives in Redis, not in any one process, so it is read where it is, once per
    scrape, instead of being kept as a gauge by whichever worker last changed it.
    """

    def __init__(self, breakers: dict[Downstream, Breaker]) -> None:
        self._breakers = breakers

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "durable_breaker_state",
            "Circuit breaker state by downstream: 0 closed, 1 half-open, 2 open",
            labels=["downstream"],
        )
        failures = GaugeMetricFamily(
            "durable_breaker_recent_failures",
            "Transient failures in the current run, by downstream",
            labels=["downstream"],
        )
        for downstream, breaker in self._breakers.items():
            try:
                seen = breaker.state()
            except (RedisError, OSError):
                continue  # no sample rather than a wrong one
            state.add_metric([downstream.value], STATE_VALUES[str(seen["state"])])
            failures.add_metric([downstream.value], float(str(seen["recent_failures"])))
        yield state
        yield failures
