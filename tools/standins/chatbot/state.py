"""What the ChatbotMobile stand-in's handlers share: data, remembered answers, counters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tools.standins.chatbot.store import Store
from tools.standins.faults import FaultState
from tools.standins.inflight import InFlight


@dataclass(frozen=True)
class Remembered:
    """The first answer given under an idempotency key, and the request it answered."""

    fingerprint: str
    status: int
    body: dict[str, Any]


@dataclass
class ChatbotState:
    """The stand-in's shared state; `tokens` empty means any bearer token is accepted."""

    faults: FaultState
    tokens: frozenset[str] = frozenset()
    store: Store = field(default_factory=Store)
    # (customer_id, idempotency key) -> first answer.
    answers: dict[tuple[str, str], Remembered] = field(default_factory=dict)
    # One lock per key, so a concurrent repeat waits for the first request and then replays it.
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None
    requests: int = 0
    in_flight: InFlight = field(default_factory=InFlight)
    writes_applied: int = 0
    replays: int = 0

    def http(self) -> aiohttp.ClientSession:
        """The download session (open while the data app runs)."""
        assert self.session is not None, "the data app has not started"
        return self.session

    def stats(self) -> dict[str, Any]:
        """Counters for the control API's `/stats`."""
        return {
            **self.in_flight.stats(),
            "requests": self.requests,
            "writes_applied": self.writes_applied,
            "replays": self.replays,
            "by_customer": {
                customer_id: data.counts()
                for customer_id, data in sorted(self.store.customers.items())
            },
        }

    def reset(self) -> None:
        """Drop all data, remembered answers and counters."""
        self.store.reset()
        self.answers.clear()
        self.locks.clear()
        self.requests = self.writes_applied = self.replays = 0
        self.in_flight.reset()


STATE = web.AppKey("state", ChatbotState)
