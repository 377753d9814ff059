"""Runs of the scheduler's periodic jobs: counted by outcome, last success as a timestamp.

The timestamp is the heartbeat an alert watches: a job that stops running (beat dead, the
maintenance queue not consumed, the job failing every time) stops moving it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from services.core import metrics

OUTCOMES = ("success", "skipped", "error")


class JobRun:
    """One run; `skip()` when it had nothing to do because another run held the work."""

    def __init__(self) -> None:
        self.skipped = False

    def skip(self) -> None:
        """Mark the run skipped (it neither failed nor did the job)."""
        self.skipped = True


@contextmanager
def scheduled_job(task: str) -> Iterator[JobRun]:
    """Measure one run of the periodic task `task`; an exception counts as an error."""
    run = JobRun()
    try:
        yield run
    except BaseException:
        metrics.JOB_RUNS.labels(task, "error").inc()
        raise
    if run.skipped:
        metrics.JOB_RUNS.labels(task, "skipped").inc()
        return
    metrics.JOB_RUNS.labels(task, "success").inc()
    metrics.JOB_LAST_SUCCESS.labels(task).set(time.time())
