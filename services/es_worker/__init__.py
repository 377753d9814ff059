"""Elasticsearch worker: `celery -A services.es_worker worker -Q es`."""

from services.core import canary  # noqa: F401  (registers the es canary)
from services.core.celery_app import app

__all__ = ["app"]
