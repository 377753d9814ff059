"""How the API's routes run: blocking endpoints in a thread, everything else on the loop."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute


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


class ThreadedRoute(APIRoute):
    """An APIRoute whose plain-function endpoint runs through `in_thread`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = in_thread(endpoint)
        super().__init__(path, endpoint, **kwargs)
