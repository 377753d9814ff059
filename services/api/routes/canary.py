"""POST /api/v1/canary: send a no-op task through a worker queue and track it."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict

from services.api.deps import PrincipalDep, RuntimeDep
from services.api.routing import ThreadedRoute
from services.api.schemas import QueuedResponse, errors
from services.core.taskdefs import CANARY, Queue

router = APIRouter(
    prefix="/api/v1",
    tags=["diagnostics"],
    route_class=ThreadedRoute,
    responses=errors(401, 403, 413, 503),
)


class CanaryRequest(BaseModel):
    """Which worker queue to probe."""

    model_config = ConfigDict(extra="forbid")
    queue: Literal["es", "http"]


@router.post("/canary", status_code=status.HTTP_202_ACCEPTED, response_model=QueuedResponse)
def send_canary(
    body: CanaryRequest, runtime: RuntimeDep, principal: PrincipalDep
) -> QueuedResponse:
    """Queue a canary task on a worker queue (admins and services)."""
    if not (principal.is_admin or principal.is_service):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the canary is for admins and services")
    return QueuedResponse.for_task(runtime.enqueuer.enqueue(CANARY[Queue(body.queue)].name, {}))
