"""Test-only: a process whose wall clock runs `CLOCK_SKEW_S` seconds off (ahead if positive).

Python imports `sitecustomize` at start-up when it is on the path; tests put this folder on
the `PYTHONPATH` of one worker process (`tests.support.procs.Worker(clock_skew_s=...)`) to
play a machine whose clock drifted. It offsets `time.time()`, `time.time_ns()` and
`datetime.now()`/`utcnow()`, which is what Celery, kombu and our code read; the monotonic
clock, which measures durations, is left alone. Never on the path of anything but a test's
child process.
"""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time

_SKEW_S = float(os.environ.get("CLOCK_SKEW_S") or 0)

if _SKEW_S:
    _real_time, _real_time_ns = _time.time, _time.time_ns
    _SKEW = _datetime.timedelta(seconds=_SKEW_S)

    def _time_skewed() -> float:
        return _real_time() + _SKEW_S

    def _time_ns_skewed() -> int:
        return _real_time_ns() + int(_SKEW_S * 1_000_000_000)

    class _SkewedDatetime(_datetime.datetime):
        """`datetime` whose `now` reads the skewed clock."""

        __slots__ = ()  # the size C extensions expect of a datetime

        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> _SkewedDatetime:
            return super().now(tz) + _SKEW

        @classmethod
        def utcnow(cls) -> _SkewedDatetime:
            return super().now(_datetime.UTC).replace(tzinfo=None) + _SKEW

    _time.time = _time_skewed
    _time.time_ns = _time_ns_skewed
    _datetime.datetime = _SkewedDatetime  # type: ignore[misc]
