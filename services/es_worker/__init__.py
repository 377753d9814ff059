"""Elasticsearch worker: `celery -A services.es_worker worker -Q es`."""

from services.core import canary  # noqa: F401  (registers the es canary)
from services.core.celery_app import app
from services.es_worker import tasks

__all__ = ["app", "tasks"]
