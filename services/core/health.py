"""Health probes of the task log database, the broker and the workers.

Reasons given to callers are fixed phrases: error texts name hosts and ports, so they go to
the log only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from services.core import redisconn
from services.core.config import Settings
from services.core.fairness import FAIR_QUEUES
from services.core.guards.breaker import Breaker
from services.core.taskdefs import PRIORITY_STEPS, Queue, queue_keys
from services.core.tasklog.fairshare import FairShareLog, as_dict

log = logging.getLogger("services.health")
DATABASE_DOWN = "task log database unreachable"
BROKER_DOWN = "broker unreachable"
WORKERS_NOT_SEEN = "the broker is back; its workers are being asked"


def redis_client(settings: Settings) -> Redis:
    """A client of the broker's Redis (its master under Sentinel), short timeouts."""
    return redisconn.connect(
        settings.redis_url,
        settings.redis_sentinel_master,
        timeout_s=settings.broker_connect_timeout_s,
    )


def check_database(engine: Engine) -> str | None:
    """None if the task log answers, else the reason."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("%s: %s: %s", DATABASE_DOWN, type(exc).__name__, str(exc).splitlines()[0])
        return DATABASE_DOWN
    return None


def check_broker(client: Redis) -> str | None:
    """None if Redis answers a PING, else the reason."""
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        log.warning("%s: %s: %s", BROKER_DOWN, type(exc).__name__, exc)
        return BROKER_DOWN
    return None


def waiting_messages(client: Redis, prefix: str) -> dict[str, int]:
    """Messages waiting in each queue, priority sub-lists included."""
    counts: dict[str, int] = {}
    with client.pipeline(transaction=False) as pipe:
        for queue in Queue:
            for _, key in queue_keys(queue, prefix):
                pipe.llen(key)
        lengths = pipe.execute()
    per_queue = len(PRIORITY_STEPS)
    for index, queue in enumerate(Queue):
        counts[queue.value] = sum(lengths[index * per_queue : (index + 1) * per_queue])
    return counts


def workers_by_queue(celery: Celery, timeout_s: float = 1.0) -> dict[str, list[str]]:
    """Live workers (node names) consuming each queue, from a broadcast to the workers."""
    replies: dict[str, Any] = celery.control.inspect(timeout=timeout_s).active_queues() or {}
    by_queue: dict[str, list[str]] = {q.value: [] for q in Queue}
    for node, queues in sorted(replies.items()):
        for queue in queues or []:
            by_queue.setdefault(queue["name"], []).append(node)
    return by_queue


def celery_status(celery: Celery, client: Redis, settings: Settings) -> tuple[bool, dict[str, Any]]:
    """Broker ping, live workers per queue, waiting messages per queue; ok is all reachable."""
    reason = check_broker(client)
    if reason is not None:
        return False, {"broker": {"ok": False, "reason": reason}}
    workers = workers_by_queue(celery)
    waiting = waiting_messages(client, settings.redis_key_prefix)
    missing = [q.value for q in (Queue.ES, Queue.HTTP) if not workers.get(q.value)]
    body: dict[str, Any] = {
        "broker": {"ok": True},
        "workers": {q: {"count": len(n), "nodes": n} for q, n in workers.items()},
        "waiting": waiting,
    }
    if missing:
        body["reason"] = f"no live worker on queue(s): {', '.join(missing)}"
    return not missing, body


def fair_share_view(fair: FairShareLog, settings: Settings) -> dict[str, Any]:
    """Per customer queue (es, http): outstanding and waiting work, in all and for the
    customers with the most (the rest as `(other)`)."""
    try:
        loads = fair.loads(settings.fair_share_top_customers)
    except SQLAlchemyError as exc:
        log.warning("%s: %s", DATABASE_DOWN, type(exc).__name__)
        return {"bound": settings.fair_share_bound, "reason": DATABASE_DOWN}
    queues = {}
    for queue in sorted(FAIR_QUEUES):
        top = loads.get(queue.value, [])
        queues[queue.value] = {
            "outstanding": sum(c.outstanding for c in top),
            "waiting": sum(c.waiting for c in top),
            "customers": as_dict(top),
        }
    return {"bound": settings.fair_share_bound, "queues": queues}


class CeleryView:
    """The /health/celery view, refreshed in the background at most every `interval`.

    A broadcast to the workers takes about a second and every caller would otherwise pay for
    its own. Callers read the last view; a caller that finds it older than
    HEALTH_CELERY_REFRESH_S starts one refresh in a background thread (only one runs at a
    time) and still gets the last view at once. Only the first caller ever waits. Nobody
    asking means no broadcasts at all.

    The broker itself is asked at every call (one PING, no retries, BROKER_CONNECT_TIMEOUT_S
    at most): a view up to a refresh old said "fine" after Redis stopped and "down" after it
    was back. A view taken while the broker was down is refreshed as soon as it answers.
    """

    def __init__(
        self,
        celery: Celery,
        client: Redis,
        settings: Settings,
        breakers: Mapping[Any, Breaker],
        fair: FairShareLog | None = None,
    ) -> None:
        self._celery = celery
        self._client = client
        self._settings = settings
        self._breakers = breakers
        self._fair = fair
        # Its own client: one attempt per call (the default retries would keep a caller
        # several seconds on a broker that is down).
        self._ping = redisconn.connect(
            settings.redis_url,
            settings.redis_sentinel_master,
            timeout_s=settings.broker_connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._lock = threading.Lock()
        self._view: tuple[bool, dict[str, Any]] | None = None
        self._refreshed_at: float | None = None
        self._refreshing = False
        self._first = threading.Event()

    def close(self) -> None:
        """Close the client that asks the broker."""
        self._ping.close()

    def refresh(self) -> None:
        """Ask the broker and the workers now."""
        # When it was asked: a refresh takes a while, and what it saw is as old as its start.
        asked = datetime.now(UTC).isoformat(timespec="milliseconds")
        try:
            ok, body = celery_status(self._celery, self._client, self._settings)
            if body["broker"]["ok"]:
                # Open breakers do not make the stack unhealthy: parking rides out an outage.
                body["breakers"] = {str(d): b.state() for d, b in self._breakers.items()}
        except Exception as exc:  # the broker went away mid-check, for one
            log.warning("celery health check failed: %s: %s", type(exc).__name__, exc)
            ok, body = False, {"broker": {"ok": False, "reason": BROKER_DOWN}}
        if self._fair is not None:
            body["fair_share"] = fair_share_view(self._fair, self._settings)
        body["checked_at"] = asked
        with self._lock:
            self._view = (ok, body)
            self._refreshed_at = time.monotonic()
        self._first.set()

    def _refresh_in_background(self) -> None:
        try:
            self.refresh()
        finally:
            with self._lock:
                self._refreshing = False

    def _start_refresh(self, *, force: bool = False) -> None:
        with self._lock:
            at = self._refreshed_at
            stale = at is None or time.monotonic() - at >= self._settings.health_celery_refresh_s
            if (stale or force) and not self._refreshing:
                self._refreshing = True
                threading.Thread(
                    target=self._refresh_in_background, name="celery-health", daemon=True
                ).start()

    def current(self, wait_s: float = 5.0) -> tuple[bool, dict[str, Any]] | None:
        """The last view with the broker asked now (the first call waits up to `wait_s` for
        a view); None if none yet."""
        self._start_refresh()
        self._first.wait(wait_s)
        with self._lock:
            view = self._view
        if view is None:
            return None
        reason = check_broker(self._ping)
        if reason is not None:
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            return False, {"broker": {"ok": False, "reason": reason}, "checked_at": now}
        ok, body = view
        if not body["broker"]["ok"]:
            # The broker answers again; the workers have not been asked since it did.
            self._start_refresh(force=True)
            body = {**body, "broker": {"ok": True}, "reason": WORKERS_NOT_SEEN}
            return False, body
        return ok, body
