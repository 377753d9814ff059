"""Celery glue of tracked tasks: one decorator, no per-task boilerplate."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Celery, Task
from celery.signals import task_failure

from services.core.celery_app import app as default_app
from services.core.config import get_settings
from services.core.db import session_factory
from services.core.guards.gate import Gate
from services.core.health import redis_client
from services.core.secrecy import Sealer
from services.core.taskdefs import TaskSpec
from services.core.tasklog.repository import TaskLogRepository
from services.core.tracking.runner import Body, OutcomeKind, TaskRunner

log = logging.getLogger("services.tracking")

_runners: dict[int, TaskRunner] = {}


def runner() -> TaskRunner:
    """The task runner of this process (built after fork, once per process)."""
    pid = os.getpid()
    if pid not in _runners:
        settings = get_settings()
        _runners[pid] = TaskRunner(
            repo=TaskLogRepository(session_factory(settings.database_url)),
            sealer=Sealer(settings.secrets_key.get_secret_value()),
            settings=settings,
            gate=Gate(redis_client(settings), settings),
        )
    return _runners[pid]


class TrackedTask(Task):  # type: ignore[misc]
    """Base of every tracked task; `tracked_spec` says what it is."""

    tracked_spec: TaskSpec
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    # Unlimited for Celery: the runner's deadline and count policy decide. (Passing
    # max_retries=None to retry() does not do this; it falls back to the default of 3.)
    max_retries = None


def tracked_task(spec: TaskSpec, app: Celery = default_app) -> Callable[[Body], TrackedTask]:
    """Register `body(ctx, payload)` as the tracked Celery task of `spec`."""

    def decorate(body: Body) -> TrackedTask:
        options: dict[str, Any] = {"name": spec.name, "bind": True, "base": TrackedTask}
        if spec.soft_time_limit_s is not None:
            options["soft_time_limit"] = spec.soft_time_limit_s
        if spec.time_limit_s is not None:
            options["time_limit"] = spec.time_limit_s

        def run(self: TrackedTask, payload: dict[str, Any] | None = None) -> None:
            outcome = runner().run(spec, self.request.id, payload or {}, body)
            if outcome.kind in (OutcomeKind.RETRY, OutcomeKind.DEFERRED, OutcomeKind.PARKED):
                raise self.retry(countdown=outcome.delay_s)

        run.__name__ = run.__qualname__ = spec.name
        run.__doc__ = body.__doc__
        task: TrackedTask = app.task(**options)(run)
        task.tracked_spec = spec
        return task

    return decorate


@task_failure.connect  # type: ignore[untyped-decorator]
def _on_task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    # Fires in the worker's main process when a pool process died without requeue (hard time
    # limit): the body could record nothing, and the message is acked, so record the lost
    # attempt here and publish the retry ourselves.
    spec = getattr(sender, "tracked_spec", None)
    if spec is None or task_id is None:
        return
    if not isinstance(exception, TimeLimitExceeded | WorkerLostError):
        return
    outcome = runner().recover_lost(spec, task_id, exception)
    if outcome.kind is OutcomeKind.RETRY:
        sender.apply_async(kwargs=kwargs or {}, task_id=task_id, countdown=outcome.delay_s)
