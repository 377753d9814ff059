"""The dashboards: overview, one per downstream, workers (celery-exporter series)."""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from services.core.taskdefs import Downstream
from tools.dashboards.panels import (
    BREAKER_STATES,
    RATE,
    datasource_variable,
    graph,
    label_variable,
    quantiles,
    single,
    states,
)

TAGS = ["durable-writes", "generated"]
# Every selector is scoped to the chosen namespace and release (the scrape's labels), so two
# releases in one Prometheus are never summed together.
SCOPE = 'namespace=~"$namespace", release=~"$release"'
Q = f'{SCOPE}, queue=~"$queue"'
QT = f'{Q}, task=~"$task"'


def _base(uid: str, title: str, description: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(datasource_variable())
        .with_variable(label_variable("namespace", "namespace", 'up{job=~"durable-.+"}'))
        .with_variable(
            label_variable("release", "release", 'up{job=~"durable-.+", namespace=~"$namespace"}')
        )
    )


def overview() -> Dashboard:
    """Throughput, failures, backlog against the deadline, breakers, run time."""
    outcomes = "durable_task_outcomes_total"
    return (
        _base(
            "durable-writes-overview",
            "durable-writes / overview",
            "Accepted and finished writes, failures, backlog and its age against the retry "
            "budget, breakers and run time. Source: the durable_* metrics of the API, the "
            "workers and the scheduler's shared-state exporter.",
        )
        .with_variable(
            label_variable("queue", "queue", f"durable_queue_outstanding_tasks{{{SCOPE}}}")
        )
        .with_variable(label_variable("task", "task", f"{outcomes}{{{Q}}}"))
        .with_row(Row("Throughput and failures"))
        .with_panel(
            single("Accepted/s", "reqps", f"sum(rate(durable_enqueued_total{{{QT}}}[{RATE}]))")
        )
        .with_panel(
            single(
                "Succeeded/s",
                "reqps",
                f'sum(rate({outcomes}{{outcome="success", {QT}}}[{RATE}]))',
            )
        )
        .with_panel(
            single(
                "Dead-lettered (1h)",
                "short",
                f"sum(increase(durable_task_dead_lettered_total{{{QT}}}[1h]))",
                "Tasks that failed for good in the last hour; each one fires "
                "DurableTaskDeadLettered. Redrive with durable-tasks redrive.",
            )
        )
        .with_panel(
            single(
                "Outstanding tasks",
                "short",
                f"sum(durable_queue_outstanding_tasks{{{Q}}})",
                "Accepted and not finished (the autoscaling figure).",
            )
        )
        .with_panel(
            graph(
                "Accepted and succeeded per second",
                "reqps",
                (
                    f"sum by (queue) (rate(durable_enqueued_total{{{QT}}}[{RATE}]))",
                    "accepted {{queue}}",
                ),
                (
                    f'sum by (queue) (rate({outcomes}{{outcome="success", {QT}}}[{RATE}]))',
                    "succeeded {{queue}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Failure ratio by task",
                "percentunit",
                (
                    f'sum by (task) (rate({outcomes}{{outcome="failed", {QT}}}[{RATE}])) / '
                    f'sum by (task) (rate({outcomes}{{outcome=~"success|failed", {QT}}}[{RATE}]))',
                    "{{task}}",
                ),
                description="Share of finished tasks that failed for good; the alert "
                "DurableTaskFailureRatioHigh fires above 5 % over 10 minutes.",
            )
        )
        .with_panel(
            graph(
                "Dead-lettered by task and reason",
                "short",
                (
                    "sum by (task, reason) "
                    f"(increase(durable_task_dead_lettered_total{{{QT}}}[{RATE}]))",
                    "{{task}} ({{reason}})",
                ),
            )
        )
        .with_panel(
            graph(
                "Retries by error kind",
                "ops",
                (
                    "sum by (error_kind) "
                    f'(rate(durable_task_retries_total{{{SCOPE}, task=~"$task"}}[{RATE}]))',
                    "{{error_kind}}",
                ),
                (
                    "sum by (reason) "
                    f'(rate(durable_task_parked_total{{{SCOPE}, task=~"$task"}}[{RATE}]))',
                    "parked: {{reason}}",
                ),
                description="Retries spend the retry budget; parked deliveries (open breaker, "
                "rate limit) do not.",
            )
        )
        .with_row(Row("Backlog"))
        .with_panel(
            graph(
                "Outstanding tasks by queue and status",
                "short",
                (
                    f"sum by (queue, status) (durable_queue_outstanding_tasks{{{Q}}})",
                    "{{queue}} {{status}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Oldest outstanding task against the retry budget",
                "s",
                (
                    f"max by (queue) (durable_queue_oldest_outstanding_age_seconds{{{Q}}})",
                    "oldest {{queue}}",
                ),
                (
                    f"0.5 * max by (queue) (durable_queue_retry_budget_seconds{{{Q}}})",
                    "half budget {{queue}}",
                ),
                description="Crossing half the budget fires DurableOutstandingTaskHalfBudget; "
                "at the full budget the task fails with deadline_exhausted.",
            )
        )
        .with_panel(
            graph(
                "Tasks within 10 % of their deadline",
                "short",
                (f"sum by (queue) (durable_queue_near_deadline_tasks{{{Q}}})", "{{queue}}"),
            )
        )
        .with_panel(
            graph(
                "Broker: ready and unacked messages",
                "short",
                (f"sum by (queue) (durable_broker_ready_messages{{{Q}}})", "ready {{queue}}"),
                (
                    f"sum by (queue, state) (durable_broker_unacked_messages{{{Q}}})",
                    "{{state}} {{queue}}",
                ),
                description="Ready counts the priority sub-lists too; unacked messages are "
                "held by workers (reserved: prefetched or running; delayed: countdown).",
            )
        )
        .with_panel(
            graph(
                "Fair share: outstanding and waiting work per customer",
                "short",
                (
                    f"sum by (customer) (durable_customer_outstanding_tasks{{{Q}}})",
                    "outstanding {{customer}}",
                ),
                (
                    f"sum by (customer) (durable_customer_waiting_tasks{{{Q}}})",
                    "waiting {{customer}}",
                ),
                description="The customers with the most unfinished work (FAIR_SHARE_TOP_"
                "CUSTOMERS per queue, the rest as (other)). Waiting: accepted over the "
                "customer's FAIR_SHARE_BOUND, kept in the task log until its turn; KEDA's "
                "outstanding-work trigger counts it.",
                width=24,
            )
        )
        .with_row(Row("Downstreams and run time"))
        .with_panel(
            states(
                "Circuit breakers",
                f"max by (downstream) (durable_breaker_state{{{SCOPE}}})",
                "{{downstream}}",
            )
        )
        .with_panel(quantiles("Task run time", "durable_task_duration_seconds_bucket", QT))
        .with_panel(
            graph(
                "Tasks running",
                "short",
                (f"sum by (queue) (durable_tasks_running{{{Q}}})", "{{queue}}"),
            )
        )
        .with_panel(
            quantiles(
                "Rate-limit waits",
                "durable_rate_limit_wait_seconds_bucket",
                f'{SCOPE}, limit=~".+"',
                by="limit",
            )
        )
        .with_row(Row("Platform"))
        .with_panel(
            graph(
                "API requests by route and status",
                "reqps",
                (
                    "sum by (route, status) "
                    f"(rate(durable_http_requests_total{{{SCOPE}}}[{RATE}]))",
                    "{{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            quantiles(
                "API latency by route (p50/p95/p99)",
                "durable_http_request_duration_seconds_bucket",
                f'{SCOPE}, route!="<unmatched>"',
                by="route",
            )
        )
        .with_panel(
            graph(
                "Publish latency and failures",
                "s",
                (
                    "histogram_quantile(0.95, sum by (le, queue) "
                    f"(rate(durable_publish_duration_seconds_bucket{{{Q}}}[{RATE}])))",
                    "p95 {{queue}}",
                ),
                (
                    f"sum by (queue) (rate(durable_enqueue_publish_failures_total{{{Q}}}[{RATE}]))",
                    "failures/s {{queue}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Reconciler and scheduled jobs",
                "short",
                (
                    "sum by (status) "
                    f"(increase(durable_reconciler_republished_total{{{SCOPE}}}[{RATE}]))",
                    "republished ({{status}})",
                ),
                (
                    "sum by (task, outcome) "
                    f"(increase(durable_scheduled_job_runs_total{{{SCOPE}}}[{RATE}]))",
                    "{{task}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Since the last successful run of each scheduled job",
                "s",
                (
                    "time() - max by (task) "
                    f"(durable_scheduled_job_last_success_timestamp_seconds{{{SCOPE}}})",
                    "{{task}}",
                ),
                description="DurableReconcilerNotRunning fires when tasklog_reconcile passes "
                "10 minutes.",
            )
        )
    )


def downstream(target: Downstream) -> Dashboard:
    """Requests, outcomes, latency and breaker of one downstream."""
    name = target.value
    sel = f'{SCOPE}, downstream="{name}"'
    requests = "durable_downstream_requests_total"
    failed = 'outcome!~"ok|not_found|conflict"'
    return (
        _base(
            f"durable-writes-{name}",
            f"durable-writes / {name}",
            f"Every request the workers (and the API's reads) send to {name}: outcomes, "
            "latency per operation, and its circuit breaker.",
        )
        .with_panel(single("Requests/s", "reqps", f"sum(rate({requests}{{{sel}}}[{RATE}]))"))
        .with_panel(
            single(
                "Failing share",
                "percentunit",
                f"(sum(rate({requests}{{{sel}, {failed}}}[{RATE}])) or vector(0)) / "
                f"sum(rate({requests}{{{sel}}}[{RATE}]))",
                "Requests that got no answer or a 429/5xx/other 4xx (not found and version "
                "conflicts are normal answers).",
            )
        )
        .with_panel(
            single("Breaker", "none", f"max(durable_breaker_state{{{sel}}})").mappings(
                BREAKER_STATES  # type: ignore[arg-type]
            )
        )
        .with_panel(
            single(
                "Recent transient failures",
                "short",
                f"max(durable_breaker_recent_failures{{{sel}}})",
                "The breaker opens when these reach BREAKER_FAILURE_THRESHOLD.",
            )
        )
        .with_panel(
            graph(
                "Requests by outcome",
                "reqps",
                (f"sum by (outcome) (rate({requests}{{{sel}}}[{RATE}]))", "{{outcome}}"),
            )
        )
        .with_panel(
            graph(
                "Requests by operation",
                "reqps",
                (f"sum by (operation) (rate({requests}{{{sel}}}[{RATE}]))", "{{operation}}"),
            )
        )
        .with_panel(
            quantiles(
                "Latency (all operations)",
                "durable_downstream_request_duration_seconds_bucket",
                sel,
            )
        )
        .with_panel(
            graph(
                "p95 latency by operation",
                "s",
                (
                    "histogram_quantile(0.95, sum by (le, operation) "
                    f"(rate(durable_downstream_request_duration_seconds_bucket{{{sel}}}[{RATE}])))",
                    "{{operation}}",
                ),
            )
        )
        .with_panel(states("Breaker state", f"max(durable_breaker_state{{{sel}}})", name))
        .with_panel(
            graph(
                "Deliveries parked by the breaker",
                "ops",
                (
                    "sum by (task) "
                    "(rate(durable_task_parked_total"
                    f'{{{SCOPE}, reason="breaker:{name}"}}[{RATE}]))',
                    "{{task}}",
                ),
            )
        )
    )


def workers() -> Dashboard:
    """Workers as celery-exporter sees them (celery-mixin's series), and our own."""
    cq = f'{SCOPE}, queue_name=~"$queue"'
    cn = f'{SCOPE}, name=~"$task"'
    return (
        _base(
            "durable-writes-workers",
            "durable-writes / workers",
            "Workers and queues from celery-exporter (Celery events and broker), next to "
            "the workers' own metrics.",
        )
        .with_variable(label_variable("queue", "queue_name", f"celery_queue_length{{{SCOPE}}}"))
        .with_variable(label_variable("task", "name", f"celery_task_received_total{{{SCOPE}}}"))
        .with_panel(single("Workers up", "short", f"sum(celery_worker_up{{{SCOPE}}})"))
        .with_panel(single("Tasks active", "short", f"sum(celery_worker_tasks_active{{{SCOPE}}})"))
        .with_panel(
            single(
                "Queue length",
                "short",
                f"sum(celery_queue_length{{{cq}}})",
                "LLEN of the queues as celery-exporter reads them (no priority sub-lists).",
            )
        )
        .with_panel(
            single(
                "Processes per queue",
                "short",
                f"sum(celery_active_process_count{{{cq}}})",
            )
        )
        .with_panel(
            graph(
                "Workers up by host",
                "short",
                (f"max by (hostname) (celery_worker_up{{{SCOPE}}})", "{{hostname}}"),
                (
                    f"count by (queue) (durable_worker_start_time_seconds{{{SCOPE}}})",
                    "own: {{queue}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Queue length",
                "short",
                (f"sum by (queue_name) (celery_queue_length{{{cq}}})", "{{queue_name}}"),
                (
                    f"sum by (queue_name) (celery_active_worker_count{{{cq}}})",
                    "workers {{queue_name}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Tasks received, succeeded and retried",
                "ops",
                (
                    f"sum by (name) (rate(celery_task_received_total{{{cn}}}[{RATE}]))",
                    "received {{name}}",
                ),
                (
                    f"sum by (name) (rate(celery_task_succeeded_total{{{cn}}}[{RATE}]))",
                    "succeeded {{name}}",
                ),
                (
                    f"sum by (name) (rate(celery_task_retried_total{{{cn}}}[{RATE}]))",
                    "retried {{name}}",
                ),
                description="Celery's view: a tracked task that fails for good ends "
                "normally for Celery (the task log records the failure), so failures are "
                "on the overview dashboard, not here.",
            )
        )
        .with_panel(
            quantiles(
                "Task run time (celery-exporter)", "celery_task_runtime_bucket", cn, by="name"
            )
        )
        .with_panel(
            graph(
                "Tasks active by host",
                "short",
                (f"sum by (hostname) (celery_worker_tasks_active{{{SCOPE}}})", "{{hostname}}"),
                (f"sum by (queue) (durable_tasks_running{{{SCOPE}}})", "own: {{queue}}"),
            )
        )
        .with_panel(
            graph(
                "Worker uptime",
                "s",
                (
                    "time() - max by (instance, queue) "
                    f"(durable_worker_start_time_seconds{{{SCOPE}}})",
                    "{{queue}} {{instance}}",
                ),
                description="A crash-looping worker never gets old; "
                "DurableQueueWithoutConsumer fires when no worker of a queue stays up.",
            )
        )
    )


def all_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard as JSON-ready data, by file name."""
    built = {
        "overview.json": overview(),
        **{f"{d.value}.json": downstream(d) for d in Downstream},
        "workers.json": workers(),
    }
    return {
        name: json.loads(json.dumps(board.build(), cls=JSONEncoder))
        for name, board in built.items()
    }
