"""Health probes of the task log database, the broker and the workers."""

from __future__ import annotations

from typing import Any

from celery import Celery
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from services.core.celery_app import PRIORITY_SEP, PRIORITY_STEPS
from services.core.config import Settings
from services.core.taskdefs import Queue


def redis_client(settings: Settings) -> Redis:
    """A Redis client with short timeouts, for probes."""
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.broker_connect_timeout_s,
        socket_timeout=settings.broker_connect_timeout_s,
    )


def check_database(engine: Engine) -> str | None:
    """None if the task log answers, else the reason."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return f"database unreachable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return None


def check_broker(client: Redis) -> str | None:
    """None if Redis answers a PING, else the reason."""
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        return f"broker unreachable: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def waiting_messages(client: Redis, prefix: str) -> dict[str, int]:
    """Messages waiting in each queue, priority sub-lists included."""
    counts: dict[str, int] = {}
    with client.pipeline(transaction=False) as pipe:
        for queue in Queue:
            pipe.llen(prefix + queue.value)
            for step in PRIORITY_STEPS[1:]:
                pipe.llen(f"{prefix}{queue.value}{PRIORITY_SEP}{step}")
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
