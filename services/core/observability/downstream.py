"""Latency and outcome of every request to a downstream (Elasticsearch, ChatbotMobile, ...)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

import httpx
from celery.exceptions import SoftTimeLimitExceeded

from services.core import metrics
from services.core.taskdefs import Downstream

# The operations each downstream is asked for (Elasticsearch: the client's endpoint ids our
# writer uses; ChatbotMobile: HTTP methods), so that their series exist from the start.
OPERATIONS: dict[Downstream, tuple[str, ...]] = {
    Downstream.ELASTICSEARCH: (
        "index",
        "delete",
        "bulk",
        "delete_by_query",
        "indices.create",
        "indices.exists",
    ),
    Downstream.CHATBOT: ("GET", "POST", "PUT", "DELETE"),
    Downstream.EMBEDDINGS: ("embed",),
}


class CallOutcome(StrEnum):
    """How a downstream answered one request; a small fixed set, fit for a label."""

    OK = "ok"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    CLIENT_ERROR = "client_error"
    THROTTLED = "throttled"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    ERROR = "error"  # no answer for another reason (cancelled, a bug building the request)


def outcome_of_status(status: int) -> CallOutcome:
    """The outcome an HTTP status stands for."""
    if status < 400:
        return CallOutcome.OK
    if status == 404:
        return CallOutcome.NOT_FOUND
    if status == 409:
        return CallOutcome.CONFLICT
    if status == 429:
        return CallOutcome.THROTTLED
    if status >= 500 or status in (408, 425):
        return CallOutcome.SERVER_ERROR
    return CallOutcome.CLIENT_ERROR


def httpx_failure(exc: BaseException) -> CallOutcome:
    """The outcome of an httpx request that raised before any answer."""
    if isinstance(exc, httpx.TimeoutException | SoftTimeLimitExceeded):
        return CallOutcome.TIMEOUT
    if isinstance(exc, httpx.TransportError):
        return CallOutcome.UNREACHABLE
    return CallOutcome.ERROR


class Call:
    """One request being measured; `answered(status)` once the downstream answered."""

    def __init__(self) -> None:
        self.outcome: CallOutcome | None = None

    def answered(self, status: int) -> None:
        """Record the HTTP status the downstream answered with."""
        self.outcome = outcome_of_status(status)


@contextmanager
def observed(
    downstream: Downstream,
    operation: str,
    failure: Callable[[BaseException], CallOutcome] = httpx_failure,
) -> Iterator[Call]:
    """Time a request; an exception before `answered` is classified by `failure`."""
    call = Call()
    started = time.perf_counter()
    try:
        yield call
    except BaseException as exc:
        if call.outcome is None:
            call.outcome = failure(exc)
        raise
    finally:
        elapsed = time.perf_counter() - started
        outcome = call.outcome or CallOutcome.OK
        metrics.DOWNSTREAM_REQUESTS.labels(downstream.value, operation, outcome.value).inc()
        metrics.DOWNSTREAM_DURATION.labels(downstream.value, operation).observe(elapsed)
