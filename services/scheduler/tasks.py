"""The scheduler's upkeep of the task log: retention, reconciliation, releases of held tasks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.core.celery_app import app as celery_app
from services.core.config import Settings, get_settings
from services.core.db import session_factory
from services.core.guards.gate import breakers
from services.core.guards.ratelimit import parse_limits
from services.core.health import redis_client
from services.core.observability.jobs import scheduled_job
from services.core.perprocess import per_process
from services.core.search.tombstones import DeleteMemory
from services.core.search.versions import SEQ_VERSION_BASE, es_version
from services.core.taskdefs import TASKLOG_CLEANUP, TASKLOG_RECONCILE, TASKLOG_RELEASE, Queue
from services.core.tasklog.models import TaskStatus, utcnow
from services.core.tasklog.reconciler import Reconciler
from services.core.tasklog.repository import TaskLogRepository
from services.core.tasklog.waits import WaitLog
from services.core.tracking import TaskContext
from services.core.tracking.fairshare import FairTurns
from services.core.tracking.releaser import ReleaseConfig, Releaser, ReleaseReport
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


def prune_tombstones(repo: TaskLogRepository, settings: Settings) -> int:
    """Drop delete tombstones no catalog write that may still run is older than."""
    oldest = repo.oldest_open_seq(Queue.ES)
    # Nothing open: every write from now on gets a number above the sequence's current one.
    below = es_version(oldest) if oldest is not None else SEQ_VERSION_BASE + 2**61
    legacy_before = utcnow() - timedelta(
        days=settings.tasklog_failed_retention_days, seconds=settings.es_retry_budget_s
    )
    return DeleteMemory(repo.sessions).prune(below=below, legacy_before=legacy_before)


@tracked_task(TASKLOG_CLEANUP)
def tasklog_cleanup(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, int]:
    """Apply the retention settings to the task log, and prune delete tombstones."""
    settings = get_settings()
    repo = TaskLogRepository(session_factory(settings.database_url))
    with scheduled_job(TASKLOG_CLEANUP.name):
        removed = cleanup(
            repo,
            success_days=settings.tasklog_success_retention_days,
            failed_days=settings.tasklog_failed_retention_days,
        )
        return {**removed, "tombstones": prune_tombstones(repo, settings)}


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


def make_releaser(settings: Settings, redis: Any) -> Releaser:
    """The releaser of these settings."""
    sessions = session_factory(settings.database_url)
    return Releaser(
        waits=WaitLog(sessions),
        celery=celery_app,
        redis=redis,
        key_prefix=settings.redis_key_prefix,
        breakers=breakers(redis, settings) if settings.breaker_enabled else {},
        config=ReleaseConfig(
            interval_s=settings.release_interval_s,
            queue_depth=settings.release_queue_depth,
            batch=settings.release_batch,
            deadline_margin_s=settings.long_wait_s + 2 * settings.release_interval_s,
            limits=parse_limits(settings.rate_limits),
        ),
        turns=FairTurns(sessions, settings.fair_share),
    )


@per_process
def _releaser() -> Releaser:
    settings = get_settings()
    return make_releaser(settings, redis_client(settings))


@celery_app.task(name=TASKLOG_RELEASE.name, ignore_result=True, acks_late=False)  # type: ignore[untyped-decorator]
def tasklog_release() -> dict[str, Any]:
    """Publish tasks held in the task log that are due (untracked: beat fires it again)."""
    with scheduled_job(TASKLOG_RELEASE.name) as run:
        report: ReleaseReport = _releaser().run_once()
        if not report.ran:
            run.skip()  # another scheduler's pass holds the lock
    return {"ran": report.ran, "released": report.released}
