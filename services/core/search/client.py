"""The official async Elasticsearch client, configured from the settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elastic_transport import ApiResponse, ConnectionTimeout, TransportError
from elasticsearch import ApiError, AsyncElasticsearch

from services.core.config import Settings
from services.core.observability.downstream import CallOutcome, observed, outcome_of_status
from services.core.taskdefs import Downstream


def _failure(exc: BaseException) -> CallOutcome:
    if isinstance(exc, ApiError):
        status = exc.meta.status if exc.meta is not None else 0
        return CallOutcome.OK if status < 400 else outcome_of_status(status)
    if isinstance(exc, ConnectionTimeout):
        return CallOutcome.TIMEOUT
    if isinstance(exc, TransportError):
        return CallOutcome.UNREACHABLE
    return CallOutcome.ERROR


class MeasuredElasticsearch(AsyncElasticsearch):
    """The async client with each request's latency and outcome measured.

    Every API method (namespaced ones too, and copies made by `options()`) goes through
    `perform_request`; its `endpoint_id` ("index", "bulk", "indices.create") names the
    operation without the index or document id in the path.
    """

    async def perform_request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any | None = None,
        endpoint_id: str | None = None,
        path_parts: Mapping[str, Any] | None = None,
    ) -> ApiResponse[Any]:
        with observed(Downstream.ELASTICSEARCH, endpoint_id or "other", _failure) as call:
            response = await super().perform_request(
                method,
                path,
                params=params,
                headers=headers,
                body=body,
                endpoint_id=endpoint_id,
                path_parts=path_parts,
            )
            call.answered(response.meta.status)
            return response


def make_client(settings: Settings) -> AsyncElasticsearch:
    """An async client; it does no retries of its own (the tracked task does)."""
    options: dict[str, Any] = {
        "hosts": settings.elasticsearch_hosts,
        "request_timeout": settings.elasticsearch_request_timeout_s,
        "max_retries": 0,
        "retry_on_timeout": False,
        "verify_certs": settings.elasticsearch_verify_certs,
    }
    if settings.elasticsearch_api_key is not None:
        options["api_key"] = settings.elasticsearch_api_key.get_secret_value()
    elif settings.elasticsearch_username and settings.elasticsearch_password is not None:
        options["basic_auth"] = (
            settings.elasticsearch_username,
            settings.elasticsearch_password.get_secret_value(),
        )
    if settings.elasticsearch_ca_certs:
        options["ca_certs"] = settings.elasticsearch_ca_certs
    return MeasuredElasticsearch(**options)
