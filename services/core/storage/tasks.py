"""Periodic removal of stored uploads whose task is long finished, run by the scheduler."""

from __future__ import annotations

from typing import Any

from services.core.config import get_settings
from services.core.db import session_factory
from services.core.observability.jobs import scheduled_job
from services.core.storage.base import make_storage
from services.core.storage.records import StoredFiles
from services.core.taskdefs import STORED_FILES_CLEANUP
from services.core.tracking import TaskContext
from services.core.tracking.task import tracked_task


@tracked_task(STORED_FILES_CLEANUP)
def stored_files_cleanup(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, int]:
    """Delete uploads past STORED_FILE_RETENTION_DAYS after their task finished."""
    settings = get_settings()
    files = StoredFiles(session_factory(settings.database_url))
    with scheduled_job(STORED_FILES_CLEANUP.name):
        removed = files.cleanup(make_storage(settings), settings.stored_file_retention_days)
    return {"removed": removed}
