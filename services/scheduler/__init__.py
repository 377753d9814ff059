"""Scheduler: beat plus one consumer of the maintenance queue, in one single-replica process.

    celery -A services.scheduler worker --beat -Q maintenance -c 1

Beat alone can only publish; the upkeep it schedules must also run somewhere that does not
scale with the write load, so the scheduler consumes its own queue.
"""

# First: the multiprocess metrics directory must be ready before any metric exists.
from services.core.observability import boot  # noqa: F401

# isort: split

from services.core.celery_app import app
from services.core.config import get_settings
from services.core.observability.worker import ProcessKind, instrument_worker
from services.core.storage import tasks as storage_tasks
from services.core.taskdefs import (
    STORED_FILES_CLEANUP,
    TASKLOG_CLEANUP,
    TASKLOG_RECONCILE,
    TASKLOG_RELEASE,
)
from services.scheduler import tasks as tasklog_tasks

_settings = get_settings()

# Its metrics endpoint also serves the shared state (backlog, queue depth, breakers), once.
instrument_worker(ProcessKind.SCHEDULER)

app.conf.beat_schedule = {
    "tasklog-release": {
        "task": TASKLOG_RELEASE.name,
        "schedule": _settings.release_interval_s,
        # Each pass looks at the whole log; a pass that could not run in time is not kept.
        "options": {"expires": max(_settings.release_interval_s * 2, 1.0)},
    },
    "tasklog-reconcile": {
        "task": TASKLOG_RECONCILE.name,
        "schedule": _settings.reconcile_interval_s,
        "options": {"expires": _settings.reconcile_interval_s},
        "kwargs": {"payload": {}},
    },
    "tasklog-cleanup-hourly": {
        "task": TASKLOG_CLEANUP.name,
        "schedule": 3600.0,
        # Beat fires again the next hour; an unconsumed upkeep message is not worth keeping.
        "options": {"expires": 3000},
        "kwargs": {"payload": {}},
    },
    "stored-files-cleanup-hourly": {
        "task": STORED_FILES_CLEANUP.name,
        "schedule": 3600.0,
        "options": {"expires": 3000},
        "kwargs": {"payload": {}},
    },
}

__all__ = ["app", "storage_tasks", "tasklog_tasks"]
