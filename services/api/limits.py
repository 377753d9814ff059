"""Request body limits, counted while the body streams in.

A multipart upload may be as large as UPLOAD_MAX_REQUEST_BYTES in all, any other body (JSON)
API_MAX_BODY_BYTES. A declared Content-Length over the limit is refused before the body is
read; a body without one (chunked) is refused as soon as the bytes read pass the limit, so
an endless upload stops there instead of filling the disk where multipart files are spooled.
"""

from __future__ import annotations

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPART = "multipart/form-data"


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


class BodyLimit:
    """ASGI middleware: 413 for a body over its limit, without reading past the limit."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    def _limit(self, headers: Headers) -> tuple[int, str]:
        if headers.get("content-type", "").lower().startswith(MULTIPART):
            return self.max_upload_bytes, "UPLOAD_MAX_REQUEST_BYTES"
        return self.max_body_bytes, "API_MAX_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit, setting = self._limit(headers)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(BodyTooLarge(limit, setting), scope, receive, send)
            return
        received = 0
        started = False

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

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _refuse(exc, scope, receive, send)


async def _refuse(exc: BodyTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    await response(scope, receive, send)
