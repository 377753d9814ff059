"""Prometheus metrics of the API and the workers, defined once.

Naming (README "Observability"): `durable_` prefix, base units in the name (`_seconds`),
`_total` on counters, `_timestamp_seconds` for points in time. Labels stay bounded: task,
queue, downstream, operation, outcome, error_kind, reason, route, method, status; never a
customer, user or task id, nor a URL. `job` and `instance` are Prometheus' target labels,
never ours (a scheduled job is named by its `task`).

Worker pool processes share these through prometheus-client's multiprocess mode (see
`services.core.observability`); gauges therefore say how to combine processes
(`multiprocess_mode`): `live*` modes drop the values of processes that died.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Seconds; from a fast Redis publish to a slow bulk write.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

TASK_ATTEMPTS = Counter("durable_task_attempts_total", "Task attempts started", ["task", "queue"])
TASK_OUTCOMES = Counter(
    "durable_task_outcomes_total",
    "Task deliveries by outcome (success, retry, failed, held, parked, duplicate, busy, stale, "
    "deferred)",
    ["task", "queue", "outcome"],
)
TASK_RETRIES = Counter(
    "durable_task_retries_total", "Retries scheduled, by error kind", ["task", "error_kind"]
)
TASK_DEAD_LETTERED = Counter(
    "durable_task_dead_lettered_total",
    "Tasks that failed for good (permanent_error, deadline_exhausted, max_retries_exhausted, "
    "poison)",
    ["task", "queue", "reason"],
)
TASK_DURATION = Histogram(
    "durable_task_duration_seconds",
    "Run time of one task attempt",
    ["task", "queue"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TASKS_RUNNING = Gauge(
    "durable_tasks_running",
    "Task attempts running now in this worker's pool",
    ["task", "queue"],
    multiprocess_mode="livesum",
)
WORKER_START_TIME = Gauge(
    "durable_worker_start_time_seconds",
    "When this worker (main process) started, per queue it consumes",
    ["queue"],
    multiprocess_mode="livemax",
)
ENQUEUED = Counter("durable_enqueued_total", "Tasks accepted by the API", ["task", "queue"])
FAIR_SHARE_WAITS = Counter(
    "durable_fair_share_waits_total",
    "Writes accepted over their customer's fair-share bound: they wait their turn in the "
    "task log, with no broker message",
    ["queue"],
)
FAIR_SHARE_HANDOFFS = Counter(
    "durable_fair_share_handoffs_total",
    "Waiting writes released by a finishing task of the same customer (its place handed on)",
    ["queue"],
)
ENQUEUE_PUBLISH_FAILURES = Counter(
    "durable_enqueue_publish_failures_total",
    "Accepted tasks whose first publish failed (left pending for the reconciler)",
    ["task", "queue"],
)
PUBLISH_DURATION = Histogram(
    "durable_publish_duration_seconds",
    "Time to hand one task message to the broker (publish retries included)",
    ["queue"],
    buckets=LATENCY_BUCKETS,
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
DOWNSTREAM_REQUESTS = Counter(
    "durable_downstream_requests_total",
    "Requests to a downstream by outcome (ok, not_found, conflict, client_error, throttled, "
    "server_error, timeout, unreachable)",
    ["downstream", "operation", "outcome"],
)
DOWNSTREAM_DURATION = Histogram(
    "durable_downstream_request_duration_seconds",
    "Latency of one request to a downstream, whatever its outcome",
    ["downstream", "operation"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "durable_http_requests_total",
    "API requests by route template and status code",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "durable_http_request_duration_seconds",
    "API request latency by route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
JOB_RUNS = Counter(
    "durable_scheduled_job_runs_total",
    "Runs of the scheduler's periodic jobs (by task name) by outcome (success, skipped, error)",
    ["task", "outcome"],
)
JOB_LAST_SUCCESS = Gauge(
    "durable_scheduled_job_last_success_timestamp_seconds",
    "When a periodic job (by task name) last completed",
    ["task"],
    # A timestamp survives the pool process that set it; the newest one counts.
    multiprocess_mode="max",
)
