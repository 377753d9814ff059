"""Messages of tracked tasks that have no task-log row: parked for an operator, never run.

Such a message comes from a restored broker backup, a task log restored (or a replica
promoted) without the row, or a hand-made publish. Running it would skip everything
acceptance does: its place in acceptance order, its ordering scope, its sealed secrets, the
caller-version check. It is recorded as failed with reason `unknown_message` instead: shown
in the failed list, and run only if an operator redrives it (as a new write).
"""

from __future__ import annotations

from typing import Any

from services.core.retry import GiveUpReason
from services.core.secrecy import Redactor
from services.core.taskdefs import TaskSpec
from services.core.tasklog.repository import TaskLogRepository

PARKED = (
    "the message has no task-log row (a restored broker, a task log restored without it, or "
    "a hand-made publish): parked for an operator, not run; redrive it if it is wanted"
)


def park(repo: TaskLogRepository, spec: TaskSpec, task_id: str, message: dict[str, Any]) -> bool:
    """Record the message as a failed task; False if a row of it exists already."""
    payload = Redactor().value(message)  # what the log keeps is never a secret
    if not isinstance(payload, dict):
        payload = {"message": payload}
    customer = payload.get("customer_id")
    scoped = spec.ordering is not None and isinstance(customer, str)
    return repo.park(
        task_id=task_id,
        task_name=spec.name,
        queue=spec.queue,
        payload=payload,
        reason=GiveUpReason.UNKNOWN_MESSAGE,
        error=PARKED,
        customer_id=customer if isinstance(customer, str) else None,
        order_scope=spec.ordering.scope_of(payload) if spec.ordering and scoped else None,
        order_key=spec.ordering.key_of(payload) if spec.ordering and scoped else None,
    )
