"""Prometheus metrics of this API process (of all its uvicorn workers when there are several).

Shared state (breakers, backlog, queue depth) is not here: the scheduler exports it once,
instead of every API replica reporting the same figures.
"""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.api.routing import ThreadedRoute
from services.core.observability.serving import process_registry

router = APIRouter(tags=["metrics"], route_class=ThreadedRoute)


@cache
def _registry() -> CollectorRegistry:
    # Built at the first scrape, in the process that serves it (a uvicorn worker when there
    # are several, after the parent made their directory ready).
    return process_registry()


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics() -> Response:
    """Text exposition format."""
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
