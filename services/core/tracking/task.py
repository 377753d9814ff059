"""Celery glue of tracked tasks: one decorator, no per-task boilerplate."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from billiard.exceptions import Terminated, TimeLimitExceeded, WorkerLostError
from celery import Celery, Task
from celery.worker import state as worker_state
from celery.worker.request import Request
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from services.core.celery_app import app as default_app
from services.core.config import get_settings
from services.core.db import session_factory
from services.core.guards.gate import Gate
from services.core.health import redis_client
from services.core.perprocess import per_process
from services.core.secrecy import Sealer
from services.core.taskdefs import TaskSpec
from services.core.tasklog.repository import TaskLogRepository
from services.core.tasklog.waits import Released
from services.core.tracking.fairshare import publish_released
from services.core.tracking.runner import COUNTDOWN, Body, OutcomeKind, TaskRunner

log = logging.getLogger("services.tracking")


@per_process
def runner() -> TaskRunner:
    """The task runner of this process (built after fork, once per process)."""
    settings = get_settings()
    return TaskRunner(
        repo=TaskLogRepository(session_factory(settings.database_url)),
        sealer=Sealer(settings.secrets_key.get_secret_value()),
        settings=settings,
        gate=Gate(redis_client(settings), settings),
        publish=publish_turns,
    )


def publish_turns(released: Sequence[Released]) -> None:
    """Publish writes whose fair-share turn a finished task handed on.

    Their rows already say they are queued: a publish that fails leaves them pending
    without a message, which the reconciler republishes.
    """
    try:
        publish_released(default_app, released)
    except (OperationalError, KombuError, RedisError, OSError) as exc:
        log.warning(
            "publish of a handed-on turn failed; left to the reconciler",
            extra={"error": type(exc).__name__},
        )


def lease_owner(hostname: str | None, pid: int | None) -> str:
    """Who holds an attempt's lease: the worker node and its pool process."""
    return f"{hostname}:{pid}"


# How long the main process waits to see a pool process gone before it records its attempt
# as lost; past it, the attempt is left to its lease.
GONE_WAIT_S = 5.0


def confirm_gone(pid: int, *, kill: bool, wait_s: float = GONE_WAIT_S) -> bool:
    """Whether pool process `pid` (a child of this process) has exited; with `kill`, it is
    sent SIGKILL first. An exited child not yet reaped counts as gone (it runs nothing
    more), and it is left for billiard to reap (WNOWAIT)."""
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return True
    if not hasattr(os, "waitid"):  # not on this platform: the signal is all we can go by
        return kill
    until = time.monotonic() + wait_s
    while True:
        try:
            exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # reaped already
        if exited is not None:
            return True
        if time.monotonic() > until:
            return False
        time.sleep(0.005)


class TrackedRequest(Request):  # type: ignore[misc]
    """A request in the worker's main process that records attempts lost with their process.

    When a pool process dies mid-task (hard time limit, killed, cancelled on a lost broker
    connection) its attempt could record nothing, and its lease would keep a redelivery out
    until it runs out. The main process knows which pool process ran it, so it records that
    attempt, and only that one, as a transient failure before Celery requeues or acks, once
    that process is confirmed gone: billiard reports a hard time limit before it kills the
    process, so the process is killed here first (a retry must not run beside it).
    """

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:
            # Acked by Celery (acks_on_failure_or_timeout): we publish the retry ourselves.
            self._record_lost(TimeLimitExceeded(timeout), republish=True)
        super().on_timeout(soft, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False):  # type: ignore[no-untyped-def]
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        if isinstance(exc, WorkerLostError | Terminated | SystemExit | KeyboardInterrupt):
            # Requeued or left unacked by Celery: the message comes back by itself.
            self._record_lost(exc, republish=False)
        elif isinstance(exc, TimeLimitExceeded):
            self._record_lost(exc, republish=True)
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def _record_lost(self, exc: BaseException, *, republish: bool) -> None:
        spec: TaskSpec | None = getattr(self.task, "tracked_spec", None)
        if spec is None or self.worker_pid is None:
            return
        if not confirm_gone(self.worker_pid, kill=isinstance(exc, TimeLimitExceeded)):
            log.error(
                "the process of a lost attempt is still there; its lease will end the attempt",
                extra={"task_id": self.id},
            )
            return
        try:
            owner = lease_owner(self.hostname, self.worker_pid)
            fault = self._task_fault(exc)
            outcome = runner().recover_lost(spec, self.id, exc, owner=owner, task_fault=fault)
            if republish and outcome.kind is OutcomeKind.RETRY:
                self.task.apply_async(
                    kwargs=self.kwargs or {}, task_id=self.id, countdown=outcome.delay_s
                )
        except Exception:  # never break the worker's main loop; the reconciler is the net
            log.exception("could not record a lost attempt", extra={"task_id": self.id})

    def _task_fault(self, exc: BaseException) -> bool:
        """Whether the attempt's own run killed or hung its process, rather than the worker
        stopping it (a shutdown, a cancel on a lost broker connection, a revoke)."""
        if isinstance(exc, TimeLimitExceeded):
            return True
        stopping = any(
            flag is not None and flag is not False
            for flag in (worker_state.should_stop, worker_state.should_terminate)
        )
        cancelled = bool(getattr(self, "_already_cancelled", False))
        return isinstance(exc, WorkerLostError) and not stopping and not cancelled


class TrackedTask(Task):  # type: ignore[misc]
    """Base of every tracked task; `tracked_spec` says what it is."""

    tracked_spec: TaskSpec
    Request = TrackedRequest
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    # Unlimited for Celery: the runner's deadline and count policy decide. (Passing
    # max_retries=None to retry() does not do this; it falls back to the default of 3.)
    max_retries = None


def tracked_task(spec: TaskSpec, app: Celery = default_app) -> Callable[[Body], TrackedTask]:
    """Register `body(ctx, payload)` as the tracked Celery task of `spec`."""

    def decorate(body: Body) -> TrackedTask:
        soft, hard = get_settings().time_limits(spec.soft_time_limit_s, spec.time_limit_s)
        options: dict[str, Any] = {
            "name": spec.name,
            "bind": True,
            "base": TrackedTask,
            "soft_time_limit": soft,
            "time_limit": hard,
        }

        def run(self: TrackedTask, payload: dict[str, Any] | None = None) -> None:
            owner = lease_owner(self.request.hostname, os.getpid())
            outcome = runner().run(spec, self.request.id, payload or {}, body, owner=owner)
            if outcome.kind in COUNTDOWN:
                raise self.retry(countdown=outcome.delay_s)

        run.__name__ = run.__qualname__ = spec.name
        run.__doc__ = body.__doc__
        task: TrackedTask = app.task(**options)(run)
        task.tracked_spec = spec
        return task

    return decorate
