"""How the API's routes run: blocking endpoints in a thread, everything else on the loop."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from services.api.validation import unprocessable


def in_thread(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint` (a plain function that blocks) as a coroutine that runs it in a thread.

    FastAPI runs a plain `def` endpoint in its thread pool, then validates and serializes the
    answer in the pool once more: two thread handoffs per request, a large share of a short
    one's time. Wrapped, the endpoint's own work is the only handoff. FastAPI reads the
    parameters and their annotations through `__wrapped__`, so the API is unchanged.
    """

    @functools.wraps(endpoint)
    async def run(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return run


def _parse_failure(exc: HTTPException) -> HTTPException | Exception:
    """FastAPI's 400 for a body its parser gave up on, as the 422 every refusal is."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return exc
    if isinstance(cause, RecursionError):
        return unprocessable(("body",), "nested deeper than a body can be read")
    return unprocessable(("body",), f"the body cannot be read: {type(cause).__name__}")


class ThreadedRoute(APIRoute):
    """An APIRoute whose plain-function endpoint runs through `in_thread`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = in_thread(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Any]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response: Response = await handle(request)
            except HTTPException as exc:
                refusal = _parse_failure(exc)
                if refusal is exc:
                    raise
                raise refusal from exc
            return response

        return handler
