"""Tracked tasks: every task's log transitions, retries, idempotency and redaction in one place.

`tracked_task` (Celery glue) lives in `services.core.tracking.task` and is imported by worker
code only; the API uses `services.core.enqueue`.
"""

from services.core.tracking.runner import Body, Outcome, OutcomeKind, TaskContext, TaskRunner

__all__ = ["Body", "Outcome", "OutcomeKind", "TaskContext", "TaskRunner"]
