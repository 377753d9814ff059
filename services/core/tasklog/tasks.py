"""Periodic upkeep of the task log, run by the scheduler."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.core.celery_app import app as celery_app
from services.core.config import get_settings
from services.core.db import session_factory
from services.core.health import redis_client
from services.core.observability.jobs import scheduled_job
from services.core.taskdefs import TASKLOG_CLEANUP, TASKLOG_RECONCILE
from services.core.tasklog.models import TaskStatus, utcnow
from services.core.tasklog.reconciler import Reconciler
from services.core.tasklog.repository import TaskLogRepository
from services.core.tracking import TaskContext
from services.core.tracking.task import tracked_task


def cleanup(repo: TaskLogRepository, *, success_days: int, failed_days: int) -> dict[str, int]:
    """Delete finished rows past their retention; how many of each status went."""
    now = utcnow()
    return {
        "success": repo.delete_finished_before(
            status=TaskStatus.SUCCESS, before=now - timedelta(days=success_days)
        ),
        "failed": repo.delete_finished_before(
            status=TaskStatus.FAILED, before=now - timedelta(days=failed_days)
        ),
    }


@tracked_task(TASKLOG_CLEANUP)
def tasklog_cleanup(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, int]:
    """Apply the retention settings to the task log."""
    settings = get_settings()
    with scheduled_job(TASKLOG_CLEANUP.name):
        return cleanup(
            TaskLogRepository(session_factory(settings.database_url)),
            success_days=settings.tasklog_success_retention_days,
            failed_days=settings.tasklog_failed_retention_days,
        )


@tracked_task(TASKLOG_RECONCILE)
def tasklog_reconcile(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Republish accepted tasks whose broker message is missing."""
    settings = get_settings()
    redis = redis_client(settings)
    try:
        with scheduled_job(TASKLOG_RECONCILE.name) as run:
            report = Reconciler(
                sessions=session_factory(settings.database_url),
                celery=celery_app,
                redis=redis,
                key_prefix=settings.redis_key_prefix,
                stale_s=settings.reconcile_stale_s,
                processing_stale_s=settings.processing_stale_s,
            ).run_once()
            if not report.ran:
                run.skip()  # another scheduler's pass holds the lock
    finally:
        redis.close()
    return {
        "ran": report.ran,
        "candidates": report.candidates,
        "live": report.live,
        "republished": len(report.republished),
    }
