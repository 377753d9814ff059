"""The bare baseline of the pipeline benchmark: plain Celery tasks, no task log, no guards.

The app has the project's Celery settings (broker options, acks late, prefetch 1, events),
plus a queue `bare` of its own; its tasks count what they did in Redis so the benchmark can
tell when a backlog is drained:

    celery -A tools.bench.bare_worker worker -Q bare -c 2
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from celery import Celery
from kombu.entity import Queue as KombuQueue
from redis import Redis

from services.core.celery_app import make_celery_app
from services.core.config import Settings, get_settings
from services.core.search.client import make_client

DONE_KEY = "bare:done"
FIRST_KEY = "bare:first"
LAST_KEY = "bare:last"
QUEUE = "bare"


def bare_celery(settings: Settings) -> Celery:
    """A Celery app with the project's settings and a queue of the baseline's own."""
    app = make_celery_app(settings)
    queues = [*app.conf.task_queues, KombuQueue(QUEUE, routing_key=QUEUE)]
    app.conf.update(task_queues=queues, task_routes=({"bare_noop": {"queue": QUEUE}},))
    return app


settings = get_settings()
app = bare_celery(settings)
_redis: dict[int, Redis] = {}
_es: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}


def _done() -> None:
    """Count a finished task and note when the first and the last finished."""
    pid = os.getpid()
    if pid not in _redis:
        _redis[pid] = Redis.from_url(settings.redis_url)
    prefix, now = settings.redis_key_prefix, repr(time.time())
    with _redis[pid].pipeline(transaction=False) as pipe:
        pipe.incr(f"{prefix}{DONE_KEY}")
        pipe.set(f"{prefix}{FIRST_KEY}", now, nx=True)
        pipe.set(f"{prefix}{LAST_KEY}", now)
        pipe.execute()


@app.task(name="bare_noop", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def noop(payload: dict[str, Any] | None = None) -> None:
    """Nothing, then count it."""
    _done()


@app.task(name="bare_es_index", acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
def es_index(payload: dict[str, Any]) -> None:
    """The Elasticsearch call a tracked upsert makes (same client), then count it."""
    pid = os.getpid()
    if pid not in _es:
        _es[pid] = (asyncio.new_event_loop(), make_client(settings))
    loop, client = _es[pid]
    loop.run_until_complete(
        client.index(
            index=payload["index"],
            id=payload["id"],
            document=payload["document"],
            version=payload["version"],
            version_type="external",
            routing=payload["routing"],
        )
    )
    _done()
