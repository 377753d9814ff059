"""Request and response types shared by the write endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Form, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from services.core.enqueue import Enqueued
from services.core.ids import CUSTOMER_ID_PATTERN
from services.core.storable import text_problem

CustomerQuery = Annotated[str, Query(pattern=CUSTOMER_ID_PATTERN)]
CustomerField = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN)]
CustomerForm = Annotated[str, Form(pattern=CUSTOMER_ID_PATTERN)]


def _storable(text: str) -> str:
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def _in_utc_range(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside years 1 to 9999 once converted to UTC") from None


# Free text that reaches the task log, a filter or a downstream: no NUL, no lone surrogate
# (a 422 naming the field, where the database would have refused it with an error).
Text = Annotated[str, AfterValidator(_storable)]
# A point in time with its zone (which instant a zoneless time means is a guess), in range.
Moment = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]


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


class ErrorAnswer(BaseModel):
    """Every refusal but a 422: what went wrong, in words."""

    detail: str


# What each status other than 422 means on the routes that may answer it; a router lists
# the ones it answers (`responses=errors(...)`), so the OpenAPI document names every status.
ERRORS = {
    401: "no valid bearer token (missing, expired, malformed or badly signed)",
    403: "the token may not do this: another customer's data, or an operator's action",
    404: "no such task (or file) visible to this token",
    405: "no operation at this path takes this method",
    409: "the task is not failed, or was retried already",
    413: "the body, a file or the text is larger than its limit (the answer names the setting)",
    415: "the upload's content type is not accepted (UPLOAD_ALLOWED_TYPES)",
    502: "ChatbotMobile answered with an error",
    503: "the task log, the identity provider or ChatbotMobile is unavailable: nothing was "
    "accepted, try again (Retry-After)",
    504: "ChatbotMobile did not answer in time",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of these error statuses, each with its ErrorAnswer body."""
    return {code: {"model": ErrorAnswer, "description": ERRORS[code]} for code in codes}
