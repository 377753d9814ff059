"""The releaser: publishes tasks held in the task log when they are due.

Run by the scheduler every `RELEASE_INTERVAL_S`, under a Redis lock. A pass, per queue:
1. leaves alone a queue that already has `RELEASE_QUEUE_DEPTH` messages waiting (a drained
   backlog never floods Redis; workers take from the list as fast as they can);
2. picks held tasks that are due (by the database's clock): any close to its deadline (it
   gets its last attempt there, ordering and in-flight waits excepted), backoffs, rate-limit
   windows, ordering and in-flight waits whose time has come, and tasks waiting for a
   breaker that now lets work through: all of them when it is closed, one (its probe) when
   it is half-open, none while it is open;
3. bounds the pick by the room in the queue, the batch size and the cluster-wide rate limits
   of the tasks and their downstreams (so released work is not parked again at once);
4. releases them in acceptance order, each with one conditional UPDATE, then publishes;
5. fills what room is left with writes waiting for their fair-share turn, in round robin
   across customers (`tracking.fairshare`).

A crash between 4's UPDATE and the publish leaves the task pending without a message: the
reconciler republishes it (its rules apply). A task released twice by mistake would still run
once: a claim is refused while another delivery holds the task's lease.
"""

from __future__ import annotations

import logging
import math
from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import datetime

from celery import Celery
from prometheus_client import Counter
from redis import Redis

from services.core.guards.breaker import Breaker
from services.core.guards.lock import RedisLock
from services.core.guards.ratelimit import Rate
from services.core.health import waiting_messages
from services.core.taskdefs import Downstream, Queue, UnknownTaskError, spec_for
from services.core.tasklog.waits import (
    BREAKER_REASONS,
    TIMED_REASONS,
    Candidate,
    Released,
    WaitLog,
)
from services.core.tracking.fairshare import FairTurns, in_turn_order, publish_released

log = logging.getLogger("services.releaser")

RELEASED = Counter(
    "durable_releaser_released_total",
    "Tasks the releaser published from the task log, by queue",
    ["queue"],
)
LOCK_KEY = "releaser:lock"


@dataclass
class ReleaseReport:
    """What one pass did."""

    ran: bool
    released: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReleaseConfig:
    """How much one pass may release."""

    interval_s: float
    queue_depth: int
    batch: int
    # Held tasks whose deadline comes within this are released whatever they wait for.
    deadline_margin_s: float
    limits: dict[str, Rate] = field(default_factory=dict)


class Releaser:
    """Publishes due tasks held in the task log."""

    def __init__(
        self,
        *,
        waits: WaitLog,
        celery: Celery,
        redis: Redis,
        key_prefix: str,
        breakers: dict[Downstream, Breaker],
        config: ReleaseConfig,
        turns: FairTurns | None = None,
    ) -> None:
        self._waits = waits
        self._turns = turns
        self._celery = celery
        self._redis = redis
        self._prefix = key_prefix
        self._breakers = breakers
        self._config = config
        self._lock = RedisLock(redis, f"{key_prefix}{LOCK_KEY}")

    def run_once(self, now: datetime | None = None) -> ReleaseReport:
        """One pass (at the database's time unless `now` is given); `ran` is False when
        another pass holds the lock."""
        token = self._lock.acquire(ttl_s=max(60.0, self._config.interval_s * 10))
        if token is None:
            return ReleaseReport(ran=False)
        try:
            return self._pass(now)
        finally:
            self._lock.release(token)

    def _pass(self, now: datetime | None) -> ReleaseReport:
        report = ReleaseReport(ran=True)
        depths = waiting_messages(self._redis, self._prefix)
        allowances = {d: b.releasable() for d, b in self._breakers.items()}
        for queue in Queue:
            room = min(self._config.batch, self._config.queue_depth - depths.get(queue.value, 0))
            if room <= 0:
                continue
            chosen = self._within_limits(self._candidates(queue, now, room, allowances))[:room]
            released = self._waits.release([c.task_id for c in chosen], now)
            self._publish(released)
            released += self._fair_turns(queue, room - len(released), now)
            if released:
                RELEASED.labels(queue.value).inc(len(released))
                report.released[queue.value] = len(released)
        if report.released:
            log.info("released held tasks", extra={"released": report.released})
        return report

    def _fair_turns(self, queue: Queue, room: int, now: datetime | None) -> list[Released]:
        """Queue writes waiting for their fair-share turn, in turn order."""
        if self._turns is None:
            return []
        turns = self._within_limits(self._turns.turns(queue, room))
        released = in_turn_order(self._waits.release([c.task_id for c in turns], now), turns)
        self._publish(released)
        return released

    def _candidates(
        self,
        queue: Queue,
        now: datetime | None,
        room: int,
        allowances: dict[Downstream, int | None],
    ) -> list[Candidate]:
        found: dict[str, Candidate] = {}
        margin = self._config.deadline_margin_s
        for c in self._waits.near_deadline(queue.value, margin, room, now=now):
            found[c.task_id] = c
        for reason in TIMED_REASONS:
            for c in self._waits.due(queue.value, reason, now, room):
                found[c.task_id] = c
        for downstream, reason in BREAKER_REASONS.items():
            # Without breakers (BREAKER_ENABLED=false) nothing holds them back.
            allowed = allowances.get(downstream)
            limit = room if allowed is None else min(room, allowed)
            if limit <= 0:
                continue
            for c in self._waits.by_seq(queue.value, reason, limit):
                found[c.task_id] = c
        return sorted(found.values(), key=lambda c: c.seq)

    def _within_limits(self, candidates: list[Candidate]) -> list[Candidate]:
        """Drop what the cluster-wide rate limits would only park again during this pass."""
        if not self._config.limits:
            return candidates
        budget = {
            name: max(1, math.ceil(rate.count * self._config.interval_s * 2 / rate.period_s))
            for name, rate in self._config.limits.items()
        }
        used: Tally[str] = Tally()
        kept: list[Candidate] = []
        for c in candidates:
            try:
                spec = spec_for(c.task_name)
                names = [c.task_name, *(d.value for d in spec.downstreams)]
            except UnknownTaskError:
                names = [c.task_name]
            limited = [n for n in names if n in budget]
            if any(used[n] >= budget[n] for n in limited):
                continue
            used.update(limited)
            kept.append(c)
        return kept

    def _publish(self, released: list[Released]) -> None:
        publish_released(self._celery, released)
