"""Prometheus metrics of the API and the workers.

Worker pool processes share counters through prometheus-client's multiprocess mode when
PROMETHEUS_MULTIPROC_DIR is set (the exporter that serves them comes with observability).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TASK_ATTEMPTS = Counter("durable_task_attempts_total", "Task attempts started", ["task", "queue"])
TASK_OUTCOMES = Counter(
    "durable_task_outcomes_total",
    "Task attempts by outcome (success, retry, failed, duplicate, deferred)",
    ["task", "queue", "outcome"],
)
TASK_RETRIES = Counter(
    "durable_task_retries_total", "Retries scheduled, by error kind", ["task", "error_kind"]
)
TASK_DEAD_LETTERED = Counter(
    "durable_task_dead_lettered_total",
    "Tasks that failed for good, by reason",
    ["task", "reason"],
)
TASK_DURATION = Histogram(
    "durable_task_duration_seconds",
    "Run time of one task attempt",
    ["task", "queue"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
ENQUEUED = Counter("durable_enqueued_total", "Tasks accepted by the API", ["task", "queue"])
ENQUEUE_PUBLISH_FAILURES = Counter(
    "durable_enqueue_publish_failures_total",
    "Accepted tasks whose first publish failed (left pending for the reconciler)",
    ["task", "queue"],
)
TASK_PARKED = Counter(
    "durable_task_parked_total",
    "Deliveries put back with a delay without running or spending a retry, by reason",
    ["task", "reason"],
)
RATE_LIMIT_WAIT = Histogram(
    "durable_rate_limit_wait_seconds",
    "Time an attempt waited for its cluster-wide rate limit",
    ["limit"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
