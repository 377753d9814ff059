"""Label sets created at start, so that the first event of a kind is seen as an increase.

A counter child appears only when first used; Prometheus then sees a new series already at
1, and `increase()` cannot tell it from one that was always 1: the first dead-lettered task
after a start would never alert. Children created at 0 when the process starts avoid that.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.core import metrics
from services.core.errors import ErrorKind
from services.core.observability.jobs import OUTCOMES as JOB_OUTCOMES
from services.core.retry import GiveUpReason
from services.core.taskdefs import Queue, TaskSpec

# Outcomes the alerts and dashboards compute ratios from.
_OUTCOMES = ("success", "failed", "retry")


def preinit_worker(specs: Iterable[TaskSpec]) -> None:
    """Zero series of the tasks a worker runs."""
    for spec in specs:
        metrics.TASK_ATTEMPTS.labels(spec.name, spec.queue)
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


def preinit_api(specs: Iterable[TaskSpec]) -> None:
    """Zero series of the tasks the API accepts."""
    for spec in specs:
        metrics.ENQUEUED.labels(spec.name, spec.queue)
        metrics.ENQUEUE_PUBLISH_FAILURES.labels(spec.name, spec.queue)
