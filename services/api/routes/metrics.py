"""Prometheus metrics of this API process, plus the breakers' states read from Redis."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from services.api.deps import RuntimeDep
from services.core.guards.breaker import BreakerCollector

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(runtime: RuntimeDep) -> Response:
    """Text exposition format; the breakers are read at each scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes write counters to files in that directory; merge them.
        own = CollectorRegistry()
        MultiProcessCollector(own)
    else:
        own = REGISTRY
    shared = CollectorRegistry()
    shared.register(BreakerCollector(runtime.breakers))
    body = generate_latest(own) + generate_latest(shared)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
