"""Cluster-wide rate limits in Redis (GCRA), per task name or per downstream.

Celery's own `rate_limit` is counted by each worker process, so ten workers allow ten times
the rate. Here every attempt draws from one budget in Redis, timed by Redis's clock so that
the hosts' clocks do not matter.

A limit "N/s" allows N attempts per second on average and bursts of up to N. An attempt that
would wait no longer than `max_wait_s` reserves its slot and sleeps until it; a longer wait
reserves nothing and the task is parked for that long instead, so a worker slot is not held
by a sleeping task.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

# The RATE_LIMITS syntax lives below the settings; re-exported for the limiter's callers.
from services.core.rates import Rate, RateLimitSyntaxError, parse_limits

__all__ = ["Grant", "Rate", "RateLimitSyntaxError", "RateLimiter", "parse_limits"]

# KEYS: the limit's key. ARGV: emission_ms, tolerance_ms, max_wait_ms.
# Returns {wait in ms (slot reserved) or minus the wait (nothing reserved), Redis' now in ms}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tonumber(ARGV[2]) - now
if wait < 0 then wait = 0 end
wait = math.ceil(wait)
if wait > tonumber(ARGV[3]) then return {-wait, now} end
local next_tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)
return {wait, now}
"""


@dataclass(frozen=True)
class Grant:
    """A limit's answer: sleep `wait_s` then run (reserved), or park for `wait_s`."""

    reserved: bool
    wait_s: float
    # When the slot starts, on Redis' clock (ms since the epoch): the one clock all share.
    starts_at_ms: int = 0


class RateLimiter:
    """Draws attempts from the cluster-wide budgets."""

    def __init__(self, redis: Redis, prefix: str, limits: dict[str, Rate], max_wait_s: float):
        self.limits = limits
        self._prefix = prefix
        self._max_wait_ms = int(max_wait_s * 1000)
        self._acquire = redis.register_script(_ACQUIRE)

    def acquire(self, name: str) -> Grant | None:
        """Draw one attempt from the budget of `name`; None if `name` has no limit."""
        rate = self.limits.get(name)
        if rate is None:
            return None
        emission = rate.interval_ms
        tolerance = max(rate.period_s * 1000 - emission, 0.0)
        waited, now_ms = (
            int(v)
            for v in self._acquire(
                keys=[f"{self._prefix}ratelimit:{name}"],
                args=[emission, tolerance, self._max_wait_ms],
            )
        )
        return Grant(
            reserved=waited >= 0, wait_s=abs(waited) / 1000, starts_at_ms=now_ms + abs(waited)
        )
