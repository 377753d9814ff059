"""The syntax of RATE_LIMITS (`NAME=COUNT/s`, `/m` or `/h`): read by the settings, which check
it at start, and by the cluster-wide limiter in services/core/guards/ratelimit.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Rate", "RateLimitSyntaxError", "parse_limits"]

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_ITEM = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*=\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$")


class RateLimitSyntaxError(ValueError):
    """A RATE_LIMITS value that cannot be read."""


@dataclass(frozen=True)
class Rate:
    """`count` attempts per `period_s` seconds."""

    count: float
    period_s: float

    @property
    def interval_ms(self) -> float:
        """Milliseconds between two attempts at the steady rate."""
        return self.period_s * 1000 / self.count


def parse_limits(text: str) -> dict[str, Rate]:
    """'es_upsert_product=10/s, elasticsearch=300/m' as {name: Rate}; '' means no limits."""
    limits: dict[str, Rate] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        match = _ITEM.match(item)
        if match is None:
            raise RateLimitSyntaxError(
                f"rate limit {item.strip()!r} is not NAME=COUNT/s, /m or /h "
                "(NAME a task name or a downstream)"
            )
        name, count, unit = match.groups()
        if float(count) <= 0:
            raise RateLimitSyntaxError(f"rate limit {item.strip()!r} must allow more than 0")
        if name in limits:
            raise RateLimitSyntaxError(f"rate limit for {name!r} given twice")
        limits[name] = Rate(float(count), _PERIODS[unit])
    return limits
