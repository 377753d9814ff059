"""The official async Elasticsearch client, configured from the settings."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch

from services.core.config import Settings


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
    return AsyncElasticsearch(**options)
