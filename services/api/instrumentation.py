"""Request metrics of the API by route template, as a plain ASGI middleware."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.asgi import WatchedSend
from services.core import metrics

# Anything else a client sends as a method is counted as "other": labels stay bounded.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The path template of the route that served the request, never the path itself."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestMetrics:
    """Counts requests and observes their latency by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        watched = WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        finally:
            # If the app raised before answering, the server answers 500.
            status = watched.status or 500
            method = scope["method"] if scope["method"] in _METHODS else "other"
            # Routing filled scope["route"] in place on the way in.
            route = route_template(scope)
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
