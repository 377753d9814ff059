"""Accepting a write: the caller's right to the customer, idempotency, then the task log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.api.deps import Runtime, authorize
from services.api.schemas import QueuedResponse
from services.api.validation import unprocessable
from services.core.auth import Principal
from services.core.enqueue import IdempotencyConflict, request_hash


def accept(
    runtime: Runtime,
    principal: Principal,
    task_name: str,
    payload: dict[str, Any],
    *,
    request: Mapping[str, Any],
    idempotency_key: str | None,
    secrets: Mapping[str, str] | None = None,
    task_id: str | None = None,
) -> QueuedResponse:
    """Queue a write for the caller; `request` is what identifies a repeat of it."""
    customer_id = payload["customer_id"]
    authorize(principal, customer_id)
    try:
        accepted = runtime.enqueuer.enqueue(
            task_name,
            payload,
            user_id=principal.user_id,
            customer_id=customer_id,
            secrets=secrets,
            idempotency_key=idempotency_key,
            request_hash=request_hash(task_name, request) if idempotency_key else None,
            task_id=task_id,
        )
    except IdempotencyConflict as exc:
        raise unprocessable(("header", "Idempotency-Key"), str(exc)) from exc
    return QueuedResponse.for_task(accepted)
