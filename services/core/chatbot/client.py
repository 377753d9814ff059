"""httpx client of ChatbotMobile's contract (contracts/chatbotmobile.openapi.yaml).

Errors come out as our kinds: connection errors, timeouts and 408/425/429/5xx are transient,
other 4xx permanent, with the response body kept (truncated). Each carries the gateway status
the API answers for a read that fails this way (502, 503 or 504).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from services.core.config import Settings
from services.core.errors import (
    PermanentError,
    TransientError,
    is_retryable_status,
    retry_after_s,
)
from services.core.observability.downstream import observed
from services.core.taskdefs import Downstream

BODY_CHARS = 500
# The contract's header on an answer replayed from ChatbotMobile's idempotency memory.
REPLAYED_HEADER = "Idempotent-Replayed"


class ChatbotUnavailable(TransientError):
    """ChatbotMobile could not take the request now."""

    def __init__(
        self,
        message: str,
        *,
        gateway_status: int,
        retry_after_s: float | None = None,
        in_flight: bool = False,
    ):
        super().__init__(
            message,
            retry_after_s=retry_after_s,
            downstream=Downstream.CHATBOT,
            in_flight=in_flight,
        )
        self.gateway_status = gateway_status


class ChatbotRejected(PermanentError):
    """ChatbotMobile refused the request for good (`replayed`: the answer it remembered
    under the request's Idempotency-Key)."""

    def __init__(self, message: str, *, upstream_status: int, replayed: bool = False) -> None:
        super().__init__(message, downstream=Downstream.CHATBOT)
        self.upstream_status = upstream_status
        self.gateway_status = 404 if upstream_status == 404 else 502
        self.replayed = replayed


class ChatbotClient:
    """One pooled connection set per process; safe to share between threads."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        headers = {"User-Agent": "durable-writes/0.1"}
        if settings.chatbot_api_token is not None:
            headers["Authorization"] = f"Bearer {settings.chatbot_api_token.get_secret_value()}"
        self._http = httpx.Client(
            base_url=settings.chatbot_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(
                settings.chatbot_read_timeout_s, connect=settings.chatbot_connect_timeout_s
            ),
            transport=transport,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str | None = None,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Send a request; a 2xx response or ChatbotUnavailable / ChatbotRejected."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            # The operation label is the method: paths carry customer and FAQ ids.
            with observed(Downstream.CHATBOT, method.upper()) as call:
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
                call.answered(response.status_code)
        except httpx.TimeoutException as exc:
            raise ChatbotUnavailable(
                f"ChatbotMobile timed out ({type(exc).__name__})",
                gateway_status=504,
                # Sent, but unanswered: ChatbotMobile may still be applying it.
                in_flight=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
            ) from exc
        except httpx.TransportError as exc:
            raise ChatbotUnavailable(
                f"ChatbotMobile is unreachable ({type(exc).__name__})",
                gateway_status=503,
                # Broken after the request went out: ChatbotMobile may still apply it.
                in_flight=not isinstance(exc, httpx.ConnectError),
            ) from exc
        if response.status_code < 400:
            return response
        message = f"ChatbotMobile {response.status_code}: {response.text[:BODY_CHARS]}"
        if is_retryable_status(response.status_code):
            gateway = 503 if response.status_code in (429, 503) else 502
            raise ChatbotUnavailable(
                message, gateway_status=gateway, retry_after_s=retry_after_s(response.headers)
            )
        replayed = response.headers.get(REPLAYED_HEADER, "").lower() == "true"
        raise ChatbotRejected(message, upstream_status=response.status_code, replayed=replayed)

    def write(
        self, method: str, path: str, keys: str | Sequence[str], **kwargs: Any
    ) -> dict[str, Any]:
        """A write with its Idempotency-Key; the JSON answer.

        Several keys (a redrive: the keys of the write's earlier incarnations, then its own)
        are tried in order: an earlier key answers for what was done under it (a write that
        landed is not applied twice); a refusal remembered under it is that incarnation's
        answer, not this write's, and the next key is tried.
        """
        tried = (keys,) if isinstance(keys, str) else tuple(keys)
        for n, key in enumerate(tried):
            try:
                body: dict[str, Any] = self.request(
                    method, path, idempotency_key=key, **kwargs
                ).json()
            except ChatbotRejected as exc:
                if exc.replayed and n < len(tried) - 1:
                    continue
                raise
            return body
        raise ValueError("a write needs at least one Idempotency-Key")

    def read(self, path: str, **params: Any) -> httpx.Response:
        """A read with query parameters."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})
