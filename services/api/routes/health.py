"""Liveness, readiness and the Celery view of the plan's /health/celery."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.deps import MaybePrincipalDep, RuntimeDep
from services.api.routing import ThreadedRoute
from services.api.schemas import errors
from services.core.health import check_database

router = APIRouter(prefix="/health", tags=["health"], route_class=ThreadedRoute)


@router.get("/live")
def live() -> dict[str, str]:
    """The process runs and answers."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "the task log is unreachable"}})
def ready(runtime: RuntimeDep) -> Any:
    """The task log answers, so writes can be accepted.

    The broker is not asked: a write is accepted once its task-log row is committed, and the
    reconciler publishes it when the broker is back. Failing readiness while Redis is down
    would take every API replica out of its Service exactly when that matters.
    """
    reason = check_database(runtime.engine)
    if reason is not None:
        return JSONResponse({"status": "unavailable", "reasons": [reason]}, status_code=503)
    return {"status": "ok"}


@router.get(
    "/celery",
    responses={
        **errors(401),
        503: {"description": "broker down or a queue has no worker"},
    },
)
def celery(runtime: RuntimeDep, principal: MaybePrincipalDep) -> Any:
    """Broker ping, live workers per queue, messages waiting per queue, breaker states, and
    fair share: outstanding and waiting work per queue.

    Answered from a view refreshed in the background at most every HEALTH_CELERY_REFRESH_S
    (`checked_at` says when). Worker node names (host names) are shown to authenticated
    callers only, the customers with the most work to services only.
    """
    view = runtime.celery_view.current()
    if view is None:
        body: dict[str, Any] = {"status": "degraded", "reason": "the first check is running"}
        return JSONResponse(body, status_code=503)
    ok, cached = view
    body = copy.deepcopy(cached)
    if principal is None:
        for workers in body.get("workers", {}).values():
            workers.pop("nodes", None)
    if principal is None or not principal.is_service:
        # Customer ids are other tenants' business: only services see them.
        for queue in body.get("fair_share", {}).get("queues", {}).values():
            queue.pop("customers", None)
    body["status"] = "ok" if ok else "degraded"
    return JSONResponse(body, status_code=200 if ok else 503)
