"""Error kinds: which failures are worth a retry and which are final."""

from __future__ import annotations

import socket
from enum import StrEnum
from typing import Any

import httpx
from celery.exceptions import SoftTimeLimitExceeded

from services.core.taskdefs import Downstream

# 408 timeout, 425 too early, 429 throttled; 5xx are all transient.
RETRYABLE_STATUS = frozenset({408, 425, 429})


class ErrorKind(StrEnum):
    """Transient errors are retried until the deadline; permanent ones fail at once."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"


class TaskError(Exception):
    """Base of the errors a task body raises on purpose."""

    kind: ErrorKind = ErrorKind.PERMANENT

    def __init__(self, message: str, *, downstream: Downstream | None = None) -> None:
        super().__init__(message)
        # The downstream that answered this way (or failed to answer): feeds its breaker.
        self.downstream = downstream


class TransientError(TaskError):
    """Worth retrying: the downstream may accept the same request later."""

    kind = ErrorKind.TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        downstream: Downstream | None = None,
        in_flight: bool = False,
    ) -> None:
        super().__init__(message, downstream=downstream)
        self.retry_after_s = retry_after_s
        # The request may have reached the downstream and still be worked on there (its
        # answer timed out or the connection broke): it may land until a client timeout
        # later.
        self.in_flight = in_flight


class WaitForInFlight(Exception):
    """Raised by a task body that did its part and must come back in `delay_s`, when writes
    it cannot see (sent by processes it does not know of) have landed or never will: a
    delete-all's last sweep. Its progress is saved first; no retry is counted."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class PermanentError(TaskError):
    """Retrying cannot help: the request itself is wrong (bad mapping, validation)."""

    kind = ErrorKind.PERMANENT


def is_retryable_status(status_code: int) -> bool:
    """Whether an HTTP status from a downstream is transient."""
    return status_code in RETRYABLE_STATUS or 500 <= status_code <= 599


def leaves_in_flight(exc: BaseException) -> bool:
    """Whether a failed attempt may have left a request the downstream still works on: its
    answer timed out, the connection broke after sending, or the soft time limit cut the
    attempt short."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return True
    return isinstance(exc, TransientError) and exc.in_flight


def classify(exc: BaseException) -> ErrorKind:
    """The kind of an exception raised by a task body.

    Anything not known to be transient is permanent: retrying a bug or a rejected request
    only delays the failure and hides it.
    """
    if isinstance(exc, TaskError):
        return exc.kind
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        return ErrorKind.TRANSIENT if is_retryable_status(code) else ErrorKind.PERMANENT
    transient = (
        ConnectionError,
        TimeoutError,
        socket.timeout,
        httpx.TransportError,
        SoftTimeLimitExceeded,
    )
    if isinstance(exc, transient):
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT


def retry_after_s(headers: Any) -> float | None:
    """Seconds from a Retry-After header (in seconds; a date or garbage: None), if any."""
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
