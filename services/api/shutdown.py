"""503 with Retry-After for a request the server drops at the end of its shutdown timeout.

On SIGTERM uvicorn stops accepting, lets requests in flight finish for
`timeout_graceful_shutdown` (the process table's shutdown timeout), then cancels the rest,
and answers each of them 500: "the server broke", for a request that only needs to go to
another replica. This middleware answers them 503 with Retry-After instead. A write whose
thread was past its commit may still be accepted: the answer says so, and a client that
sends its Idempotency-Key again gets that task rather than a second one.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.asgi import WatchedSend

log = logging.getLogger("services.api")
DROPPED = (
    "the server is shutting down and dropped this request; send it again (a write may have "
    "been accepted already: send it with the same Idempotency-Key)"
)


class AnswerWhenDropped:
    """ASGI middleware: a request cancelled before its answer started gets 503 Retry-After."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched = WatchedSend(send)
        try:
            await self.app(scope, receive, watched)
        except asyncio.CancelledError:
            if watched.started:
                raise
            # The cancel ends this request only: answering it is the last thing it does.
            log.warning("request dropped at shutdown; answered 503", extra={"path": scope["path"]})
            answer = JSONResponse(
                {"detail": DROPPED},
                status_code=503,
                headers={"Retry-After": "5", "Connection": "close"},
            )
            await answer(scope, receive, send)
