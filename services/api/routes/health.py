"""Liveness, readiness and the Celery view of the plan's /health/celery."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.deps import RuntimeDep
from services.core.health import celery_status, check_broker, check_database

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
def live() -> dict[str, str]:
    """The process runs and answers."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "a dependency is unreachable"}})
def ready(runtime: RuntimeDep) -> Any:
    """The task log and the broker are reachable, so writes can be accepted."""
    reasons = [
        r for r in (check_database(runtime.engine), check_broker(runtime.redis)) if r is not None
    ]
    if reasons:
        return JSONResponse({"status": "unavailable", "reasons": reasons}, status_code=503)
    return {"status": "ok"}


@router.get("/celery", responses={503: {"description": "broker down or a queue has no worker"}})
def celery(runtime: RuntimeDep) -> Any:
    """Broker ping, live workers per queue, messages waiting per queue, breaker states."""
    ok, body = celery_status(runtime.celery, runtime.redis, runtime.settings)
    if body["broker"]["ok"]:
        # Open breakers do not make the stack unhealthy: parking is how it rides out an outage.
        body["breakers"] = {d.value: b.state() for d, b in runtime.breakers.items()}
    body["status"] = "ok" if ok else "degraded"
    return JSONResponse(body, status_code=200 if ok else 503)
