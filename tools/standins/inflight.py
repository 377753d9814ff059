"""Overlapping deliveries of one write, as a stand-in sees them.

A correct client never has two requests of the same write in flight at once: one live
attempt per task. A stand-in names each write (ChatbotMobile by its Idempotency-Key,
Elasticsearch by document and external version) and counts how often two overlapped, so a
test can tell two attempts of one task running side by side from retries one after another.

A request is in flight from its arrival until it is answered or its client hangs up: a
client that gave up waiting (its read timeout) and retries has one attempt live, though the
stand-in may still be holding the first request's answer (the `timeout` fault).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from tools.standins.faults import Handler


class InFlight:
    """Requests in flight per write identity, and how often two overlapped."""

    def __init__(self) -> None:
        self._now: Counter[str] = Counter()
        self.overlaps = 0
        self.most = 0
        # The writes that overlapped, latest last (a bounded list, for a test to name them).
        self.overlapped: list[str] = []

    def enter(self, key: str) -> None:
        """A request of write `key` started."""
        self._now[key] += 1
        if self._now[key] > 1:
            self.overlaps += 1
            self.overlapped = [*self.overlapped[-19:], key]
        self.most = max(self.most, self._now[key])

    def leave(self, key: str) -> None:
        """A request of write `key` ended."""
        self._now[key] -= 1
        if self._now[key] <= 0:
            del self._now[key]

    def stats(self) -> dict[str, Any]:
        """The counters `GET /stats` shows."""
        return {
            "overlapping_writes": self.overlaps,
            "most_in_flight_per_write": self.most,
            "overlapped_writes": list(self.overlapped),
        }

    def reset(self) -> None:
        """Forget the counters (requests in flight stay counted)."""
        self.overlaps = 0
        self.overlapped = []
        self.most = max(self._now.values(), default=0)


def inflight_middleware(
    tracker: InFlight, key_of: Callable[[web.Request], str | None]
) -> Middleware:
    """Middleware counting the requests of each write from its start to its answer."""

    @web.middleware
    async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = key_of(request)
        if key is None:
            return await handler(request)
        tracker.enter(key)
        answer = asyncio.ensure_future(handler(request))
        try:
            while not answer.done():
                await asyncio.wait({answer}, timeout=0.05)
                transport = request.transport
                if not answer.done() and (transport is None or transport.is_closing()):
                    break  # the client hung up: its attempt is over
        except asyncio.CancelledError:
            answer.cancel()
            raise
        finally:
            tracker.leave(key)
        return await answer

    return track
