"""Request body limits, counted while the body streams in.

A route that takes uploads (form and file fields) may receive UPLOAD_MAX_REQUEST_BYTES in
all, any other route (JSON) API_MAX_BODY_BYTES, whatever the Content-Type says: the limit
is the route's, not the client's to choose. A declared Content-Length over the limit is
refused before the body is read; a body without one (chunked) is refused as soon as the
bytes read pass the limit, so an endless upload stops there instead of filling the disk
where multipart files are spooled.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.asgi import WatchedSend

FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


class BodyTooLarge(HTTPException):
    """The request body passed its limit (413)."""

    def __init__(self, limit: int, setting: str) -> None:
        # Connection: close, as the unread rest of the body cannot be skipped on this
        # connection.
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"the request body is larger than {limit} bytes ({setting})",
            headers={"Connection": "close"},
        )


def upload_operations(openapi: dict[str, Any]) -> list[tuple[str, re.Pattern[str]]]:
    """(method, path pattern) of every operation whose body is a form, from the OpenAPI
    document: the same declaration clients read."""
    found = []
    for path, item in openapi.get("paths", {}).items():
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")
        for method, operation in item.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            if any(form in content for form in FORMS):
                found.append((method.upper(), pattern))
    return found


class BodyLimit:
    """ASGI middleware: 413 for a body over its limit, without reading past the limit.

    `openapi` gives the app's OpenAPI document (asked at the first request, once every
    router is in): its form operations take uploads.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_upload_bytes: int,
        openapi: Callable[[], dict[str, Any]],
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes
        self._openapi = openapi
        self._uploads: list[tuple[str, re.Pattern[str]]] | None = None

    def _limit(self, scope: Scope) -> tuple[int, str]:
        if self._uploads is None:
            self._uploads = upload_operations(self._openapi())
        method, path = scope["method"], scope["path"]
        if any(m == method and p.match(path) for m, p in self._uploads):
            return self.max_upload_bytes, "UPLOAD_MAX_REQUEST_BYTES"
        return self.max_body_bytes, "API_MAX_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit, setting = self._limit(scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(BodyTooLarge(limit, setting), scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the body parser: FastAPI passes HTTPExceptions through,
                    # so the route never runs and the rest of the body is never read.
                    raise BodyTooLarge(limit, setting)
            return message

        watched = WatchedSend(send)
        try:
            await self.app(scope, counted_receive, watched)
        except BodyTooLarge as exc:
            if watched.started:
                raise
            await _refuse(exc, scope, receive, send)


async def _refuse(exc: BodyTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    await response(scope, receive, send)
