"""The core of a tracked task attempt, free of Celery: claim, run, classify, record, decide.

Celery glue (`tracking.task`) turns the returned `Outcome` into an ack or a delayed retry.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from services.core import metrics
from services.core.config import Settings
from services.core.errors import ErrorKind, TaskError, TransientError, classify
from services.core.guards.gate import Gate, Verdict
from services.core.retry import GiveUpReason, RetryPolicy, backoff_delay, deadline_from, decide
from services.core.secrecy import Redactor, Sealer, SealError
from services.core.taskdefs import TaskSpec
from services.core.tasklog.models import TaskStatus, utcnow
from services.core.tasklog.repository import Claim, TaskLogRepository

log = logging.getLogger("services.tracking")

MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class TaskContext:
    """What a task body may know about the attempt it runs in."""

    task_id: str
    task_name: str
    attempt: int
    retry_count: int
    deadline_at: datetime
    secrets: dict[str, str] = field(repr=False)
    redactor: Redactor = field(repr=False)
    # What earlier attempts of this task recorded as done (None on the first attempt).
    checkpoint: dict[str, Any] | None = None
    _repo: TaskLogRepository | None = field(default=None, repr=False)

    def save_progress(
        self,
        *,
        checkpoint: dict[str, Any] | None = None,
        done: int | None = None,
        total: int | None = None,
    ) -> None:
        """Record progress so that a retry resumes instead of starting over."""
        if self._repo is not None:
            self._repo.save_progress(
                self.task_id, attempt=self.attempt, checkpoint=checkpoint, done=done, total=total
            )


Body = Callable[[TaskContext, dict[str, Any]], Any]


class OutcomeKind(StrEnum):
    """How an attempt ended, from the broker's point of view."""

    SUCCESS = "success"  # ack
    FAILED = "failed"  # ack; the log says why
    RETRY = "retry"  # publish again after delay_s, then ack
    DUPLICATE = "duplicate"  # the task already finished: ack, do nothing
    STALE = "stale"  # a newer attempt owns the task: ack, do nothing
    DEFERRED = "deferred"  # the task log was unreachable: publish again, log untouched
    PARKED = "parked"  # a breaker or rate limit held it back: publish again, no retry spent


@dataclass(frozen=True)
class Outcome:
    """Result of one attempt."""

    kind: OutcomeKind
    delay_s: float = 0.0
    result: Any = None


class TaskRunner:
    """Runs one delivery of a tracked task against the task log."""

    def __init__(
        self,
        *,
        repo: TaskLogRepository,
        sealer: Sealer,
        settings: Settings,
        gate: Gate | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._repo = repo
        self._sealer = sealer
        self._settings = settings
        self._gate = gate
        self._clock = clock
        self._rng = rng
        self._sleep = sleep

    def policy(self, spec: TaskSpec) -> RetryPolicy:
        """The retry policy of a task."""
        return RetryPolicy(
            base_s=self._settings.retry_backoff_base_s,
            cap_s=self._settings.retry_backoff_max_s,
            max_retries=self._settings.max_retries(spec.queue),
        )

    def run(
        self, spec: TaskSpec, task_id: str, message_payload: dict[str, Any], body: Body
    ) -> Outcome:
        """Pass the gate, claim the task, run its body once, record what happened."""
        if self._gate is not None:
            verdict = self._gate.admit(spec, message_payload)
            if not verdict.run and self._park(spec, task_id, verdict):
                return Outcome(OutcomeKind.PARKED, delay_s=verdict.wait_s)
            if verdict.run and verdict.wait_s > 0:
                self._sleep(verdict.wait_s)
        try:
            claim = self._claim(spec, task_id, message_payload)
        except SQLAlchemyError as exc:
            return self._defer(spec, task_id, "claim", exc)
        if claim is None:
            metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.DUPLICATE).inc()
            log.info(
                "duplicate delivery of a finished task; skipped", extra={"outcome": "duplicate"}
            )
            return Outcome(OutcomeKind.DUPLICATE)

        metrics.TASK_ATTEMPTS.labels(spec.name, spec.queue).inc()
        try:
            secrets = self._sealer.unseal(claim.sealed_secrets)
        except SealError as exc:
            return self._failed_attempt(spec, claim, exc, Redactor())
        redactor = Redactor(secrets.values())
        ctx = TaskContext(
            task_id=task_id,
            task_name=spec.name,
            attempt=claim.attempt,
            retry_count=claim.retry_count,
            deadline_at=claim.deadline_at,
            secrets=secrets,
            redactor=redactor,
            checkpoint=claim.checkpoint,
            _repo=self._repo,
        )
        started = time.monotonic()
        try:
            result = body(ctx, claim.payload)
        except Exception as exc:  # every failure is classified and recorded, none swallowed
            if self._gate is not None:
                self._gate.report(spec, claim.payload, exc)
            if not isinstance(exc, TaskError):
                # Not raised on purpose: most likely a bug, so keep the traceback in the log.
                log.exception("task body raised %s", type(exc).__name__)
            return self._failed_attempt(spec, claim, exc, redactor)
        finally:
            metrics.TASK_DURATION.labels(spec.name, spec.queue).observe(time.monotonic() - started)
        if self._gate is not None:
            self._gate.report(spec, claim.payload, None)
        return self._succeeded(spec, claim, redactor.value(result))

    def _park(self, spec: TaskSpec, task_id: str, verdict: Verdict) -> bool:
        now = self._clock()
        try:
            parked = self._repo.park(
                task_id, until=now + timedelta(seconds=verdict.wait_s), now=now
            )
        except SQLAlchemyError:
            return False  # the claim that follows defers the message
        if not parked:
            # Finished, running elsewhere, or too close to its deadline: the normal path decides.
            return False
        metrics.TASK_PARKED.labels(spec.name, verdict.reason).inc()
        log.info(
            "task parked",
            extra={"outcome": "parked", "reason": verdict.reason, "delay_s": verdict.wait_s},
        )
        return True

    def recover_lost(self, spec: TaskSpec, task_id: str, exc: BaseException) -> Outcome:
        """Record an attempt whose process died (hard time limit) as a transient failure."""
        row = self._repo.get_by_task_id(task_id)
        if row is None or row.is_finished:
            return Outcome(OutcomeKind.DUPLICATE)
        claim = Claim(
            task_id=task_id,
            task_name=row.task_name,
            attempt=row.attempts,
            retry_count=row.retry_count,
            payload=row.payload,
            sealed_secrets=row.sealed_secrets,
            deadline_at=row.deadline_at,
        )
        lost = TransientError(f"attempt lost: {type(exc).__name__}: {exc}")
        return self._failed_attempt(spec, claim, lost, Redactor())

    def _claim(self, spec: TaskSpec, task_id: str, message_payload: dict[str, Any]) -> Claim | None:
        claim = self._repo.claim(task_id, now=self._clock())
        if claim is not None:
            return claim
        if self._repo.get_by_task_id(task_id) is not None:
            return None  # finished
        # Sent without the enqueue function (by beat, or by hand): adopt it into the log.
        now = self._clock()
        self._repo.create(
            task_id=task_id,
            task_name=spec.name,
            queue=spec.queue,
            payload=message_payload,
            deadline_at=deadline_from(now, self._settings.retry_budget_s(spec.queue)),
            now=now,
        )
        return self._repo.claim(task_id, now=now)

    def _succeeded(self, spec: TaskSpec, claim: Claim, result: Any) -> Outcome:
        try:
            first = self._repo.update_status(
                claim.task_id, TaskStatus.SUCCESS, result=result, now=self._clock()
            )
        except SQLAlchemyError as exc:
            # The write happened but is unrecorded; running it again is harmless by design.
            return self._defer(spec, claim.task_id, "record success", exc)
        if not first:
            log.warning("task finished by another delivery first", extra={"attempt": claim.attempt})
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.SUCCESS).inc()
        log.info("task succeeded", extra={"attempt": claim.attempt, "outcome": "success"})
        return Outcome(OutcomeKind.SUCCESS, result=result)

    def _failed_attempt(
        self, spec: TaskSpec, claim: Claim, exc: Exception, redactor: Redactor
    ) -> Outcome:
        kind = classify(exc)
        message = redactor.text(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_CHARS]
        now = self._clock()
        try:
            if kind is ErrorKind.PERMANENT:
                return self._give_up(spec, claim, message, kind, GiveUpReason.PERMANENT_ERROR)
            retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
            decision = decide(
                now=now,
                deadline=claim.deadline_at,
                retries_done=claim.retry_count,
                policy=self.policy(spec),
                retry_after_s=retry_after,
                rng=self._rng,
            )
            if not decision.retry:
                assert decision.give_up is not None
                return self._give_up(spec, claim, message, kind, decision.give_up)
            recorded = self._repo.mark_retrying(
                claim.task_id,
                attempt=claim.attempt,
                error=message,
                error_kind=kind,
                next_attempt_at=now + timedelta(seconds=decision.delay_s),
                now=now,
            )
        except SQLAlchemyError as db_exc:
            return self._defer(spec, claim.task_id, "record failure", db_exc)
        if not recorded:
            return self._stale(spec, claim)
        metrics.TASK_RETRIES.labels(spec.name, kind).inc()
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.RETRY).inc()
        log.warning(
            "task attempt failed; retrying",
            extra={
                "attempt": claim.attempt,
                "outcome": "retry",
                "error_kind": kind.value,
                "error": message,
                "delay_s": round(decision.delay_s, 3),
            },
        )
        return Outcome(OutcomeKind.RETRY, delay_s=decision.delay_s)

    def _give_up(
        self, spec: TaskSpec, claim: Claim, message: str, kind: ErrorKind, reason: GiveUpReason
    ) -> Outcome:
        recorded = self._repo.update_status(
            claim.task_id,
            TaskStatus.FAILED,
            error=message,
            error_kind=kind,
            failure_reason=reason,
            attempt=claim.attempt,
            now=self._clock(),
        )
        if not recorded:
            return self._stale(spec, claim)
        metrics.TASK_DEAD_LETTERED.labels(spec.name, spec.queue, reason).inc()
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.FAILED).inc()
        log.error(
            f"task failed for good: {reason.value.replace('_', ' ')}",
            extra={
                "attempt": claim.attempt,
                "outcome": "failed",
                "error_kind": kind.value,
                "failure_reason": reason.value,
                "error": message,
            },
        )
        return Outcome(OutcomeKind.FAILED)

    def _stale(self, spec: TaskSpec, claim: Claim) -> Outcome:
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.STALE).inc()
        log.warning(
            "attempt outcome already recorded or superseded by a newer delivery; dropped",
            extra={"attempt": claim.attempt, "outcome": "stale"},
        )
        return Outcome(OutcomeKind.STALE)

    def _defer(self, spec: TaskSpec, task_id: str, step: str, exc: Exception) -> Outcome:
        # The log is unreachable: keep the message alive by publishing it again later.
        delay = backoff_delay(3, self.policy(spec), self._rng) + 1.0
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.DEFERRED).inc()
        log.error(
            f"task log unreachable during {step}; message deferred",
            extra={"outcome": "deferred", "error": f"{type(exc).__name__}", "delay_s": delay},
        )
        return Outcome(OutcomeKind.DEFERRED, delay_s=delay)
