"""The reconciler: republish accepted tasks whose broker message is gone.

The task-log row is written before the message is published, so the log knows of every
accepted task; the broker may not (a publish that failed, Redis restarted without its data, a
retry whose republish failed). A pass:
1. takes a Redis lock, so two schedulers (one starting while another stops) never overlap,
   and gives it back only if it still holds it;
2. selects unfinished rows untouched for a while (`stale_s`) that should have a message:
   pending, retrying past their next attempt, or processing past their attempt's lease.
   Rows held in the log are the releaser's (they have no message by design);
3. collects the ids of every live message of our queues in one atomic read (MULTI/EXEC): a
   message moving from a queue list to kombu's unacked hash (a worker taking it) between two
   separate reads would be seen in neither and republished;
4. republishes the candidates with no live message, each only if its row is unchanged since
   step 2 (a worker that claimed it meanwhile wins).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import Celery
from prometheus_client import Counter
from redis import Redis
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import rowcount, transaction
from services.core.guards.lock import RedisLock
from services.core.taskdefs import Queue, queue_keys
from services.core.tasklog.clock import clock, seconds_after
from services.core.tasklog.models import TaskLog, TaskStatus

log = logging.getLogger("services.reconciler")

REPUBLISHED = Counter(
    "durable_reconciler_republished_total",
    "Tasks republished because their broker message was missing",
    ["task", "status"],
)
LOCK_KEY = "reconciler:lock"


@dataclass
class ReconcileReport:
    """What one pass saw and did."""

    ran: bool
    candidates: int = 0
    live: int = 0
    republished: list[str] = field(default_factory=list)


def message_ids(raw_messages: Iterable[bytes]) -> set[str]:
    """Task ids of kombu message bodies (queue entries or unacked entries)."""
    ids: set[str] = set()
    for raw in raw_messages:
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        if isinstance(message, list) and message:  # unacked entries: [message, exchange, key]
            message = message[0]
        if isinstance(message, dict):
            task_id = (message.get("headers") or {}).get("id")
            if task_id:
                ids.add(str(task_id))
    return ids


def live_task_ids(redis: Redis, prefix: str) -> set[str]:
    """Ids of every task with a message in our queues or held unacknowledged by a worker.

    One MULTI/EXEC: Redis runs the reads back to back, so no message is between two of them.
    """
    with redis.pipeline(transaction=True) as pipe:
        for queue in Queue:
            for _, key in queue_keys(queue, prefix):
                pipe.lrange(key, 0, -1)
        pipe.hvals(f"{prefix}unacked")
        replies = pipe.execute()
    return message_ids(raw for reply in replies for raw in reply)


class Reconciler:
    """Finds accepted tasks the broker lost and publishes them again."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        celery: Celery,
        redis: Redis,
        key_prefix: str,
        stale_s: float,
        processing_stale_s: float,
        batch: int = 1000,
    ) -> None:
        self._sessions = sessions
        self._celery = celery
        self._redis = redis
        self._prefix = key_prefix
        self._stale_s = stale_s
        self._processing_stale_s = processing_stale_s
        self._batch = batch

    def _candidates(self, now: datetime | None) -> list[TaskLog]:
        # Cut-offs by the database's clock (the times compared were written by others).
        quiet = seconds_after(clock("at"), -self._stale_s)
        stuck = seconds_after(clock("at"), -self._processing_stale_s)
        stmt = (
            select(TaskLog)
            .where(
                ~TaskLog.held,
                or_(
                    (TaskLog.status == TaskStatus.PENDING) & (TaskLog.updated_at < quiet),
                    (TaskLog.status == TaskStatus.RETRYING) & (TaskLog.next_attempt_at < quiet),
                    (TaskLog.status == TaskStatus.PROCESSING)
                    & or_(
                        TaskLog.lease_until < quiet,
                        TaskLog.lease_until.is_(None) & (TaskLog.updated_at < stuck),
                    ),
                ),
            )
            .order_by(TaskLog.updated_at)
            .limit(self._batch)
        )
        with self._sessions() as session:
            return list(session.scalars(stmt, {"at": now}))

    def _touch_if_unchanged(self, row: TaskLog, now: datetime | None) -> bool:
        stmt = (
            update(TaskLog)
            .where(
                TaskLog.task_id == row.task_id,
                TaskLog.status == row.status,
                TaskLog.updated_at == row.updated_at,
            )
            .values(updated_at=clock("at"), published_at=clock("at"))
        )
        with transaction(self._sessions) as session:
            return rowcount(session.execute(stmt, {"at": now})) == 1

    def run_once(self, now: datetime | None = None, lock_ttl_s: int = 300) -> ReconcileReport:
        """One reconciliation pass (at the database's time unless `now` is given); `ran` is
        False when another pass holds the lock."""
        lock = RedisLock(self._redis, f"{self._prefix}{LOCK_KEY}")
        token = lock.acquire(lock_ttl_s)
        if token is None:
            return ReconcileReport(ran=False)
        try:
            return self._pass(now)
        finally:
            lock.release(token)

    def _pass(self, now: datetime | None) -> ReconcileReport:
        candidates = self._candidates(now)
        report = ReconcileReport(ran=True, candidates=len(candidates))
        if not candidates:
            return report
        live = live_task_ids(self._redis, self._prefix)
        for row in candidates:
            if row.task_id in live:
                report.live += 1
                continue
            if not self._touch_if_unchanged(row, now):
                continue
            self._publish(row)
            REPUBLISHED.labels(row.task_name, row.status).inc()
            report.republished.append(row.task_id)
        if report.republished:
            log.warning(
                "republished tasks whose broker message was missing",
                extra={"republished": len(report.republished), "candidates": len(candidates)},
            )
        return report

    def _publish(self, row: TaskLog) -> None:
        options: dict[str, Any] = {"task_id": row.task_id, "queue": row.queue}
        self._celery.send_task(row.task_name, kwargs={"payload": row.payload}, **options)
