"""ChatbotMobile worker: `celery -A services.http_worker worker -Q http`."""

from services.core import canary  # noqa: F401  (registers the http canary)
from services.core.celery_app import app
from services.http_worker import tasks

__all__ = ["app", "tasks"]
