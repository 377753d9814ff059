"""Request and response types shared by the write endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Form, Query
from pydantic import BaseModel, ConfigDict, Field

from services.core.enqueue import Enqueued
from services.core.ids import CUSTOMER_ID_PATTERN

CustomerQuery = Annotated[str, Query(pattern=CUSTOMER_ID_PATTERN)]
CustomerField = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN)]
CustomerForm = Annotated[str, Form(pattern=CUSTOMER_ID_PATTERN)]


class Strict(BaseModel):
    """Unknown fields are refused, so a typo is a 422 rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


QUEUED = "task queued"
REPLAYED = "already accepted under this Idempotency-Key; this is the original task"
WAITING_TURN = (
    "task accepted; it waits its turn: this customer's earlier writes on this queue fill its "
    "fair share, and it is queued as they finish"
)
QUEUED_BROKER_DOWN = (
    "task accepted; the broker is unreachable, it will be published when it is back"
)


class QueuedResponse(BaseModel):
    """The answer of every write: the task is accepted and tracked."""

    status: Literal["queued"] = "queued"
    task_id: str
    status_url: str
    message: str

    @classmethod
    def for_task(cls, accepted: Enqueued) -> QueuedResponse:
        """The answer for an accepted task."""
        return cls(
            task_id=accepted.task_id,
            status_url=f"/api/v1/tasks/{accepted.task_id}/status",
            message=REPLAYED
            if accepted.replayed
            else WAITING_TURN
            if accepted.waiting
            else QUEUED
            if accepted.published
            else QUEUED_BROKER_DOWN,
        )
