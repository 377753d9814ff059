"""The shared-state exporter: figures that live in the task log and in Redis, read once.

Every API replica and worker could read these, but then every one would report the same
numbers and a `sum()` would multiply them; the scheduler (one replica) serves them instead.
They are read at each scrape, never cached, so a scrape shows the state of that moment.

`durable_queue_outstanding_tasks` is the autoscaling figure: work accepted and not finished,
whether or not a broker message exists for it (KEDA's outstanding-work trigger reads it).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from services.core.config import Settings
from services.core.guards.breaker import Breaker, BreakerCollector
from services.core.taskdefs import Queue, queue_keys
from services.core.tasklog.fairshare import CustomerLoad, FairShareLog
from services.core.tasklog.models import TERMINAL, TaskLog, TaskStatus, utcnow

log = logging.getLogger("services.metrics")

# The labels that split the backlog, each with every value it can take (so that a queue with
# nothing outstanding reports 0 instead of no series). A column of the task log of the same
# name is grouped by; adding one here adds that label to durable_queue_outstanding_tasks and
# nothing else needs to change. `held`: the task waits in the log with no broker message
# (open breaker, long backoff, an earlier write of its entity): work no Redis list shows.
BACKLOG_DIMENSIONS: dict[str, tuple[Any, ...]] = {
    "queue": tuple(q.value for q in Queue),
    "status": tuple(s.value for s in TaskStatus if s not in TERMINAL),
    "held": (False, True),
}
# A task is "near its deadline" when less than this share of its retry budget is left.
NEAR_DEADLINE_SHARE = 0.1
_OUTSTANDING = TaskLog.status.not_in([s.value for s in TERMINAL])


def _label(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class TaskLogFigures:
    """Backlog figures from the task log."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """Outstanding counts, oldest age, tasks near their deadline, retry budgets."""
        now = self._clock()
        budgets = {q.value: float(self._settings.retry_budget_s(q)) for q in Queue}
        dims = list(BACKLOG_DIMENSIONS)
        columns = [getattr(TaskLog, d) for d in dims]
        near_by = or_(
            *(
                and_(
                    TaskLog.queue == queue,
                    TaskLog.deadline_at < now + timedelta(seconds=NEAR_DEADLINE_SHARE * budget),
                )
                for queue, budget in budgets.items()
            )
        )
        with self._sessions() as session:
            counts = session.execute(
                select(*columns, func.count()).where(_OUTSTANDING).group_by(*columns)
            ).all()
            oldest = session.execute(
                select(TaskLog.queue, func.min(TaskLog.created_at))
                .where(_OUTSTANDING)
                .group_by(TaskLog.queue)
            ).all()
            near = session.execute(
                select(TaskLog.queue, func.count())
                .where(_OUTSTANDING, near_by)
                .group_by(TaskLog.queue)
            ).all()

        outstanding = _gauge(
            "durable_queue_outstanding_tasks",
            "Tasks accepted and not finished (status not success/failed), with or without a "
            "broker message: the autoscaling figure",
            dims,
        )
        seen = {tuple(_label(v) for v in row[:-1]): int(row[-1]) for row in counts}
        for combo in itertools.product(*BACKLOG_DIMENSIONS.values()):
            key = tuple(_label(v) for v in combo)
            outstanding.add_metric(list(key), seen.get(key, 0))
        yield outstanding

        age = _gauge(
            "durable_queue_oldest_outstanding_age_seconds",
            "Age of the oldest unfinished task of a queue (0 when none)",
            ["queue"],
        )
        first = {queue: created for queue, created in oldest}
        for queue in budgets:
            created = first.get(queue)
            age.add_metric([queue], max((now - created).total_seconds(), 0.0) if created else 0.0)
        yield age

        close = _gauge(
            "durable_queue_near_deadline_tasks",
            "Unfinished tasks with less than 10 % of their retry budget left",
            ["queue"],
        )
        near_counts = {queue: int(n) for queue, n in near}
        for queue in budgets:
            close.add_metric([queue], near_counts.get(queue, 0))
        yield close

        yield from customer_figures(
            FairShareLog(self._sessions).loads(self._settings.fair_share_top_customers)
        )

        budget = _gauge(
            "durable_queue_retry_budget_seconds",
            "How long a task of a queue keeps retrying after it was accepted (settings)",
            ["queue"],
        )
        for queue, seconds in budgets.items():
            budget.add_metric([queue], seconds)
        yield budget


def customer_figures(loads: dict[str, list[CustomerLoad]]) -> Iterator[Metric]:
    """Outstanding and waiting work of the customers with the most, per queue.

    The `customer` label takes at most FAIR_SHARE_TOP_CUSTOMERS + 1 values per queue: the
    customers with the most unfinished work there, and `(other)` for the rest together
    (always present, so a sum over it is never an empty result).
    """
    outstanding = _gauge(
        "durable_customer_outstanding_tasks",
        "Unfinished tasks of a customer not waiting for their fair-share turn (top customers "
        "per queue, the rest as (other))",
        ["queue", "customer"],
    )
    waiting = _gauge(
        "durable_customer_waiting_tasks",
        "Tasks of a customer over its fair-share bound, waiting for their turn in the task "
        "log (top customers per queue, the rest as (other))",
        ["queue", "customer"],
    )
    for queue, customers in loads.items():
        for load in customers:
            outstanding.add_metric([queue, load.customer], load.outstanding)
            waiting.add_metric([queue, load.customer], load.waiting)
    yield outstanding
    yield waiting


def _unacked_entry(raw: bytes) -> tuple[str, bool] | None:
    # kombu keeps [message, exchange, routing_key]; our exchange routes by queue name.
    try:
        message, _exchange, routing_key = json.loads(raw)
        delayed = (message.get("headers") or {}).get("eta") is not None
    except (ValueError, TypeError, AttributeError):
        return None
    return str(routing_key), delayed


class BrokerFigures:
    """Queue depth as Redis holds it: ready lists (priority sub-lists too) and unacked."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        """Ready messages per queue and priority, unacked messages per queue and state."""
        keys = [
            (queue.value, step, key)
            for queue in Queue
            for step, key in queue_keys(queue, self._prefix)
        ]
        with self._redis.pipeline(transaction=False) as pipe:
            for _, _, key in keys:
                pipe.llen(key)
            lengths = pipe.execute()
        ready = _gauge(
            "durable_broker_ready_messages",
            "Messages waiting in a queue's Redis list; priority > 0 are kombu's sub-lists, "
            "which an LLEN of the queue name (KEDA's redis trigger) does not see",
            ["queue", "priority"],
        )
        for (queue, step, _), length in zip(keys, lengths, strict=True):
            ready.add_metric([queue, str(step)], int(length))
        yield ready

        held: dict[tuple[str, str], int] = {
            (q.value, state): 0 for q in Queue for state in ("reserved", "delayed")
        }
        for _, raw in self._redis.hscan_iter(f"{self._prefix}unacked", count=500):
            entry = _unacked_entry(raw)
            if entry is None:
                continue
            queue, delayed = entry
            state = "delayed" if delayed else "reserved"
            held[(queue, state)] = held.get((queue, state), 0) + 1
        unacked = _gauge(
            "durable_broker_unacked_messages",
            "Messages delivered to a worker and not acknowledged: reserved (prefetched or "
            "running) or delayed (waiting for a countdown/ETA inside the worker)",
            ["queue", "state"],
        )
        for (queue, state), count in sorted(held.items()):
            unacked.add_metric([queue, state], count)
        yield unacked


class SharedStateCollector(Collector):
    """Task log, broker and breaker figures, each source reported up or down."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        redis: Redis,
        settings: Settings,
        breakers: dict[Any, Breaker],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sources: dict[str, Collector] = {
            "tasklog": TaskLogFigures(sessions, settings, clock),
            "broker": BrokerFigures(redis, settings.redis_key_prefix),
            "breakers": BreakerCollector(breakers),
        }

    def collect(self) -> Iterator[Metric]:
        up = _gauge(
            "durable_exporter_source_up",
            "Whether the shared-state exporter could read a source at this scrape",
            ["source"],
        )
        took = _gauge(
            "durable_exporter_collect_duration_seconds",
            "Time the shared-state exporter spent reading a source at this scrape",
            ["source"],
        )
        for name, source in self._sources.items():
            started = time.monotonic()
            try:
                # Read the whole source before yielding any of it: all of it or none.
                figures = list(source.collect())
            except (SQLAlchemyError, RedisError, OSError) as exc:
                log.warning(
                    "shared-state source unreadable",
                    extra={"source": name, "error": type(exc).__name__},
                )
                up.add_metric([name], 0)
            else:
                up.add_metric([name], 1)
                yield from figures
            took.add_metric([name], time.monotonic() - started)
        yield up
        yield took
