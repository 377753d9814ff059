"""ASGI helpers the API's middlewares share."""

from __future__ import annotations

from starlette.types import Message, Send


class WatchedSend:
    """An ASGI `send` that notes the response's status once it started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None

    @property
    def started(self) -> bool:
        """Whether the response has started (its status and headers went out)."""
        return self.status is not None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self._send(message)
