"""ChatbotMobile worker: `celery -A services.http_worker worker -Q http`."""

# First: the multiprocess metrics directory must be ready before any metric exists.
from services.core.observability import boot  # noqa: F401

# isort: split

from services.core import canary  # noqa: F401  (registers the http canary)
from services.core.celery_app import app
from services.core.observability.worker import ProcessKind, instrument_worker
from services.http_worker import tasks

instrument_worker(ProcessKind.HTTP_WORKER)

__all__ = ["app", "tasks"]
