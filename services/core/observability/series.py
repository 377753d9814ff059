"""Label sets created at start, so that the first event of a kind is seen as an increase.

A counter child appears only when first used; Prometheus then sees a new series already at
1, and `increase()` cannot tell it from one that was always 1: the first dead-lettered task
after a start would never alert. Children created at 0 when the process starts avoid that.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.core import metrics
from services.core.errors import ErrorKind
from services.core.fairness import FAIR_QUEUES
from services.core.observability.downstream import OPERATIONS, CallOutcome
from services.core.observability.jobs import OUTCOMES as JOB_OUTCOMES
from services.core.retry import GiveUpReason
from services.core.taskdefs import Downstream, Queue, TaskSpec

# Outcomes the alerts and dashboards compute ratios from.
_OUTCOMES = ("success", "failed", "retry")


def _downstreams(spec: TaskSpec) -> set[Downstream]:
    return {*spec.downstreams, *(d for _, d in spec.optional_downstreams)}


def preinit_downstreams(downstreams: Iterable[Downstream]) -> None:
    """Zero series of the requests to these downstreams."""
    for downstream in set(downstreams):
        for operation in OPERATIONS[downstream]:
            metrics.DOWNSTREAM_DURATION.labels(downstream.value, operation)
            for outcome in CallOutcome:
                metrics.DOWNSTREAM_REQUESTS.labels(downstream.value, operation, outcome.value)


def preinit_worker(specs: Iterable[TaskSpec], rate_limits: Iterable[str] = ()) -> None:
    """Zero series of the tasks a worker runs, and of what they call."""
    specs = list(specs)
    preinit_downstreams(d for spec in specs for d in _downstreams(spec))
    for name in rate_limits:
        metrics.RATE_LIMIT_WAIT.labels(name)
    for queue in {spec.queue for spec in specs}:
        metrics.PUBLISH_DURATION.labels(queue)  # retries are published by the worker
        if queue in FAIR_QUEUES:
            metrics.FAIR_SHARE_HANDOFFS.labels(queue)
    for spec in specs:
        metrics.TASK_ATTEMPTS.labels(spec.name, spec.queue)
        metrics.TASK_DURATION.labels(spec.name, spec.queue)
        for downstream in _downstreams(spec):
            metrics.TASK_PARKED.labels(spec.name, f"breaker:{downstream.value}")
        metrics.TASKS_RUNNING.labels(spec.name, spec.queue)
        for outcome in _OUTCOMES:
            metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, outcome)
        for reason in GiveUpReason:
            metrics.TASK_DEAD_LETTERED.labels(spec.name, spec.queue, reason)
        for kind in ErrorKind:
            metrics.TASK_RETRIES.labels(spec.name, kind)
        if spec.queue is Queue.MAINTENANCE:  # the scheduler's periodic jobs
            for outcome in JOB_OUTCOMES:
                metrics.JOB_RUNS.labels(spec.name, outcome)


def preinit_poison(queues: Iterable[str]) -> None:
    """Zero series of poison messages whose task is not ours or not readable, per queue."""
    for queue in queues:
        metrics.TASK_DEAD_LETTERED.labels("unknown", queue, GiveUpReason.POISON)
        metrics.TASK_OUTCOMES.labels("unknown", queue, "failed")


def preinit_api(specs: Iterable[TaskSpec]) -> None:
    """Zero series of the tasks the API accepts (and of its reads from ChatbotMobile)."""
    specs = list(specs)
    preinit_downstreams([Downstream.CHATBOT])
    for queue in {spec.queue for spec in specs}:
        metrics.PUBLISH_DURATION.labels(queue)
        if queue in FAIR_QUEUES:
            metrics.FAIR_SHARE_WAITS.labels(queue)
    for spec in specs:
        metrics.ENQUEUED.labels(spec.name, spec.queue)
        metrics.ENQUEUE_PUBLISH_FAILURES.labels(spec.name, spec.queue)
