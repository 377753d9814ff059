"""Elasticsearch client errors as our transient/permanent kinds."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientConnectorError
from elastic_transport import ConnectionError as EsConnectionError
from elastic_transport import ConnectionTimeout, TransportError
from elasticsearch import ApiError

from services.core.errors import (
    PermanentError,
    TaskError,
    TransientError,
    is_retryable_status,
    retry_after_s,
)
from services.core.taskdefs import Downstream

ES = Downstream.ELASTICSEARCH


def describe(body: Any) -> str:
    """'type: reason' of an ES error body, or the body itself."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return f"{error.get('type', 'error')}: {error.get('reason', '')}".strip()
        return str(error)
    return str(body)


def as_task_error(exc: Exception) -> TaskError:
    """Map an exception of the ES client to TransientError or PermanentError."""
    if isinstance(exc, ApiError):
        status = exc.meta.status
        message = f"elasticsearch {status} {describe(exc.body)}"
        if is_retryable_status(status):
            return TransientError(
                message, retry_after_s=retry_after_s(exc.meta.headers), downstream=ES
            )
        return PermanentError(message, downstream=ES)
    if isinstance(exc, ConnectionTimeout | EsConnectionError):
        # Unless the connection was refused (nothing was sent), the request may have gone
        # out and Elasticsearch may still be applying it (an answer timed out or cut off).
        refused = isinstance(exc.__cause__ or exc.__context__, ClientConnectorError)
        return TransientError(
            f"elasticsearch unreachable: {type(exc).__name__}: {exc}",
            downstream=ES,
            in_flight=not refused,
        )
    if isinstance(exc, TransportError):
        return TransientError(
            f"elasticsearch transport error: {type(exc).__name__}: {exc}", downstream=ES
        )
    return PermanentError(f"{type(exc).__name__}: {exc}")
