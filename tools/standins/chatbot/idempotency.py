"""Idempotency-Key handling for every write, as the contract states it.

A write needs the header (400 without it). Keys are per customer. The first answer under a key
is remembered with the request it answered (method, path, query and JSON body, leaving out
`file_url` fields: a retry sends a freshly signed URL for the same file); a repeat of that
request gets the same status and body with `Idempotent-Replayed: true` and changes nothing,
while a different request under the key is 422 `idempotency_key_reused`.

Answers are remembered once the write was decided on the data: successes, and refusals that
depend on the data (409 `faq_exists`, 404 `faq_not_found`). A request refused before anything
was decided (422 `validation_error`, 422 `file_unavailable`, 502 `file_fetch_failed`, an
injected fault) leaves the key
unused, so the caller can fix the cause and retry under it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tools.standins.chatbot.errors import ApiError, invalid
from tools.standins.chatbot.fields import json_object, query_string, required_string
from tools.standins.chatbot.state import STATE, ChatbotState, Remembered
from tools.standins.faults import Handler

MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Write:
    """A write request past its idempotency check: the customer and the JSON body ({} if none)."""

    state: ChatbotState
    customer_id: str
    body: dict[str, Any]


Answer = tuple[int, dict[str, Any]]
WriteHandler = Callable[[web.Request, Write], Awaitable[Answer]]


def _key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if not key.strip():
        raise ApiError(
            400, "idempotency_key_missing", "writes need an Idempotency-Key header (1-255 chars)"
        )
    if len(key) > MAX_KEY_LENGTH:
        raise invalid(f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters")
    return key


def _without_file_urls(value: Any) -> Any:
    # Pre-signed file URLs change with every attempt of the same write; the file itself is
    # named by its filename, size and sha256, which stay.
    if isinstance(value, dict):
        return {k: _without_file_urls(v) for k, v in value.items() if k != "file_url"}
    if isinstance(value, list):
        return [_without_file_urls(v) for v in value]
    return value


def _fingerprint(request: web.Request, body: dict[str, Any] | None) -> str:
    # Sorted keys: the same JSON object with its fields in another order is the same request.
    query = sorted(request.query.items())
    return json.dumps(
        [request.method, request.path, query, _without_file_urls(body)], sort_keys=True
    )


def idempotent(handler: WriteHandler) -> Handler:
    """Wrap a write handler with the contract's Idempotency-Key rules."""

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        key = _key(request)
        body: dict[str, Any] | None = None
        if request.method in ("POST", "PUT"):
            body = await json_object(request)
            customer_id = required_string(body, "customer_id")
        else:
            customer_id = query_string(request, "customer_id")
        fingerprint = _fingerprint(request, body)
        slot = (customer_id, key)
        async with state.locks.setdefault(slot, asyncio.Lock()):
            first = state.answers.get(slot)
            if first is not None:
                if first.fingerprint != fingerprint:
                    raise ApiError(
                        422,
                        "idempotency_key_reused",
                        f"Idempotency-Key {key!r} was used for a different request "
                        f"of customer {customer_id!r}",
                    )
                state.replays += 1
                return web.json_response(
                    first.body, status=first.status, headers={REPLAYED_HEADER: "true"}
                )
            try:
                status, answer = await handler(request, Write(state, customer_id, body or {}))
            except ApiError as exc:
                if not exc.remembered:
                    raise
                status, answer = exc.status, exc.body()
            else:
                state.writes_applied += 1
            state.answers[slot] = Remembered(fingerprint, status, answer)
        return web.json_response(answer, status=status)

    return handle
