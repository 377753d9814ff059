"""The core of a tracked task attempt, free of Celery: wait, claim, run, classify, record.

A delivery first checks what it may have to wait for: an earlier write of the same entity
(per-entity ordering), an open breaker or a rate limit (the gate). Waits longer than
`LONG_WAIT_S` are held in the task log without a broker message (the releaser publishes the
task when due); shorter ones come back as a countdown message. Then the delivery claims the
task under a lease (one live attempt per task), runs its body once, and records the outcome.

Celery glue (`tracking.task`) turns the returned `Outcome` into an ack or a delayed message.
A task that finishes hands its customer's fair-share place to the customer's next waiting
write (`tasklog.fairshare`), which the runner gives to its `publish` callable.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
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
from services.core.taskdefs import TaskSpec, UnknownTaskError, replacing_task_names, spec_for
from services.core.tasklog import waits
from services.core.tasklog.fairshare import FairShareLog
from services.core.tasklog.models import TaskStatus, utcnow
from services.core.tasklog.ordering import OrderingQueries
from services.core.tasklog.repository import Claim, Refusal, TaskLogRepository
from services.core.tasklog.waits import Released, WaitLog

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
    # Acceptance order of the write (kept by manual retries): its version domain.
    seq: int = 0
    # The task a manual retry retries (None for a first try).
    origin_task_id: str | None = None
    _repo: TaskLogRepository | None = field(default=None, repr=False)

    @property
    def idempotency_key(self) -> str:
        """The key downstream writes carry: the same for a task and its manual retries."""
        return self.origin_task_id or self.task_id

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
    """How a delivery ended, from the broker's point of view."""

    SUCCESS = "success"  # ack
    FAILED = "failed"  # ack; the log says why
    RETRY = "retry"  # publish again after delay_s, then ack
    HELD = "held"  # ack: the task waits in the log, the releaser publishes it when due
    DUPLICATE = "duplicate"  # the task already finished: ack, do nothing
    BUSY = "busy"  # another delivery runs it under a live lease: ack, do nothing
    STALE = "stale"  # a newer attempt owns the task: ack, do nothing
    DEFERRED = "deferred"  # the task log was unreachable: publish again, log untouched
    PARKED = "parked"  # a short wait (gate): publish again after delay_s, no retry spent


COUNTDOWN = frozenset({OutcomeKind.RETRY, OutcomeKind.DEFERRED, OutcomeKind.PARKED})


@dataclass(frozen=True)
class Outcome:
    """Result of one delivery."""

    kind: OutcomeKind
    delay_s: float = 0.0
    result: Any = None


def _task_label(task_name: str | None) -> str:
    """A metric label for a message's task name: a declared task, or "unknown" (bounded)."""
    try:
        return spec_for(task_name).name if task_name else "unknown"
    except UnknownTaskError:
        return "unknown"


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
        publish: Callable[[Sequence[Released]], None] | None = None,
    ) -> None:
        self._repo = repo
        self._fair_log = FairShareLog(repo.sessions)
        self._fair = settings.fair_share
        self._publish = publish
        self._waits = WaitLog(repo.sessions)
        self._ordering = OrderingQueries(repo.sessions)
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

    def lease_s(self, spec: TaskSpec) -> float:
        """How long a claim of `spec` keeps other deliveries out."""
        _, hard = self._settings.time_limits(spec.soft_time_limit_s, spec.time_limit_s)
        return hard + self._settings.lease_margin_s

    def run(
        self,
        spec: TaskSpec,
        task_id: str,
        message_payload: dict[str, Any],
        body: Body,
        *,
        owner: str | None = None,
    ) -> Outcome:
        """Wait if needed, claim the task, run its body once, record what happened."""
        try:
            if spec.ordering is not None:
                waited = self._wait_for_earlier(spec, task_id)
                if waited is not None:
                    return waited
            if self._gate is not None:
                verdict = self._gate.admit(spec, message_payload)
                if not verdict.run:
                    waited = self._wait_for_gate(spec, task_id, verdict)
                    if waited is not None:
                        return waited
                elif verdict.wait_s > 0:
                    self._sleep(verdict.wait_s)
            claim = self._claim(spec, task_id, message_payload, owner)
        except SQLAlchemyError as exc:
            return self._defer(spec, task_id, "claim", exc)
        if not isinstance(claim, Claim):
            return self._refused(spec, claim)
        metrics.TASK_ATTEMPTS.labels(spec.name, spec.queue).inc()
        if claim.lost_attempts >= self._settings.poison_max_lost_attempts:
            # Its earlier deliveries died with their worker (SIGKILL, out of memory): the
            # lease ran out with nobody to record them. Quarantined, not run once more.
            why = f"{claim.lost_attempts} deliveries died with their worker"
            return self._give_up(spec, claim, why, ErrorKind.PERMANENT, GiveUpReason.POISON)
        if spec.ordering is not None and claim.origin_task_id != task_id:
            obsolete = self._obsolete(spec, claim)
            if obsolete is not None:
                return obsolete
        return self._attempt(spec, claim, body)

    def _attempt(self, spec: TaskSpec, claim: Claim, body: Body) -> Outcome:
        try:
            secrets = self._sealer.unseal(claim.sealed_secrets)
        except SealError as exc:
            return self._failed_attempt(spec, claim, exc, Redactor())
        redactor = Redactor(secrets.values())
        ctx = TaskContext(
            task_id=claim.task_id,
            task_name=spec.name,
            attempt=claim.attempt,
            retry_count=claim.retry_count,
            deadline_at=claim.deadline_at,
            secrets=secrets,
            redactor=redactor,
            checkpoint=claim.checkpoint,
            seq=claim.seq,
            origin_task_id=claim.origin_task_id,
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

    def _wait_for_earlier(self, spec: TaskSpec, task_id: str) -> Outcome | None:
        """Hold the task while an earlier write of the same entity is unfinished."""
        for _ in range(3):  # a blocker that finishes meanwhile is looked for once more
            blocker = self._ordering.blocker(task_id)
            if blocker is None:
                return None
            now = self._clock()
            until = now + timedelta(seconds=self._settings.order_recheck_s)
            refusal = self._waits.hold(
                task_id,
                reason=waits.ORDER,
                until=until,
                now=now,
                respect_deadline=False,  # never run before an earlier write, deadline or not
                waiting_for=blocker,
            )
            if refusal is None:
                metrics.TASK_PARKED.labels(spec.name, waits.ORDER).inc()
                metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.HELD).inc()
                log.info(
                    "task waits for an earlier write of the same entity",
                    extra={"outcome": "held", "reason": waits.ORDER, "waiting_for": blocker},
                )
                return Outcome(OutcomeKind.HELD)
            if refusal is not Refusal.BLOCKER_DONE:
                return None if refusal is Refusal.MISSING else self._refused(spec, refusal)
        return None

    def _wait_for_gate(self, spec: TaskSpec, task_id: str, verdict: Verdict) -> Outcome | None:
        """Put the task off as the gate says; None when it must run now (its deadline)."""
        breaker = verdict.reason.startswith("breaker:")
        # A breaker wait ends when its probe succeeds, which only the releaser watches.
        in_log = breaker or verdict.wait_s > self._settings.long_wait_s
        reason = verdict.reason if breaker else waits.RATE_LIMIT
        now = self._clock()
        refusal = self._waits.hold(
            task_id,
            reason=reason,
            until=now + timedelta(seconds=verdict.wait_s),
            now=now,
            in_log=in_log,
        )
        if refusal is None:
            metrics.TASK_PARKED.labels(spec.name, verdict.reason).inc()
            kind = OutcomeKind.HELD if in_log else OutcomeKind.PARKED
            metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, kind).inc()
            log.info(
                "task put off",
                extra={
                    "outcome": "held" if in_log else "parked",
                    "reason": verdict.reason,
                    "delay_s": round(verdict.wait_s, 3),
                },
            )
            if in_log:
                return Outcome(OutcomeKind.HELD)
            return Outcome(OutcomeKind.PARKED, delay_s=verdict.wait_s)
        if refusal in (Refusal.DEADLINE, Refusal.MISSING):
            return None  # close to its deadline (or not in the log yet): it runs now
        return self._refused(spec, refusal)

    def recover_lost(
        self,
        spec: TaskSpec,
        task_id: str,
        exc: BaseException,
        *,
        owner: str,
        task_fault: bool = False,
    ) -> Outcome:
        """Record the attempt `owner` ran, whose process died, as a transient failure.

        Fenced on the lost attempt itself: if another delivery claimed the task since, or
        the attempt recorded its own outcome, nothing changes. With `task_fault` (its process
        was killed or hung, not stopped by a shutdown), the loss is counted; at
        POISON_MAX_LOST_ATTEMPTS the task fails as `poison` instead of being retried.
        """
        claim = self._repo.lost_attempt(task_id, owner=owner)
        if claim is None:
            return Outcome(OutcomeKind.STALE)
        message = f"attempt lost: {type(exc).__name__}: {exc}"
        if task_fault:
            lost = self._repo.count_lost(task_id, attempt=claim.attempt)
            if lost is not None and lost >= self._settings.poison_max_lost_attempts:
                why = f"{message} ({lost} attempts killed or hung their worker)"
                return self._give_up(spec, claim, why, ErrorKind.PERMANENT, GiveUpReason.POISON)
        return self._failed_attempt(spec, claim, TransientError(message), Redactor())

    def quarantine(self, task_name: str | None, task_id: str | None, queue: str, why: str) -> bool:
        """Fail a task whose message no worker can run (undecodable, or it cannot be handed
        to the pool) as `poison`; whether its row changed.

        Counted and logged (never with the message's body) even without a readable task or a
        row: the message is dropped either way, so an operator must learn of it.
        """
        label = _task_label(task_name)
        changed = False
        if task_id is not None:
            changed = self._repo.update_status(
                task_id,
                TaskStatus.FAILED,
                error=f"poison message: {why}"[:MAX_ERROR_CHARS],
                error_kind=ErrorKind.PERMANENT,
                failure_reason=GiveUpReason.POISON,
                wake_waiters=True,
                now=self._clock(),
            )
        metrics.TASK_DEAD_LETTERED.labels(label, queue, GiveUpReason.POISON).inc()
        metrics.TASK_OUTCOMES.labels(label, queue, OutcomeKind.FAILED).inc()
        log.error(
            "poison message quarantined: the task failed for good"
            if changed
            else "poison message dropped (no unfinished task of its id in the log)",
            extra={
                "task_id": task_id,
                "task_name": label,
                "queue": queue,
                "outcome": "failed",
                "failure_reason": GiveUpReason.POISON.value,
                "error": why[:MAX_ERROR_CHARS],
            },
        )
        return changed

    def _claim(
        self, spec: TaskSpec, task_id: str, message_payload: dict[str, Any], owner: str | None
    ) -> Claim | Refusal:
        now = self._clock()
        claim = self._repo.claim(task_id, now=now, lease_s=self.lease_s(spec), owner=owner)
        if claim is not Refusal.MISSING:
            return claim
        # Sent without the enqueue function (by beat, or by hand): adopt it into the log.
        self._repo.create(
            task_id=task_id,
            task_name=spec.name,
            queue=spec.queue,
            payload=message_payload,
            deadline_at=deadline_from(now, self._settings.retry_budget_s(spec.queue)),
            now=now,
        )
        return self._repo.claim(task_id, now=now, lease_s=self.lease_s(spec), owner=owner)

    def _refused(self, spec: TaskSpec, refusal: Refusal) -> Outcome:
        kind = OutcomeKind.DUPLICATE if refusal is Refusal.FINISHED else OutcomeKind.BUSY
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, kind).inc()
        if kind is OutcomeKind.DUPLICATE:
            log.info("duplicate delivery of a finished task; skipped", extra={"outcome": kind})
        else:
            log.warning(
                "another delivery is running this task; this one is dropped",
                extra={"outcome": kind},
            )
        return Outcome(kind)

    def _obsolete(self, spec: TaskSpec, claim: Claim) -> Outcome | None:
        """A manual retry that a later, replacing write already settled ends superseded."""
        later = self._ordering.superseded_by(claim.task_id, replacing_task_names())
        if later is None:
            return None
        result = {"result": "superseded", "reason": "a later write replaced it", "by": later}
        return self._succeeded(spec, claim, result)

    def _succeeded(self, spec: TaskSpec, claim: Claim, result: Any) -> Outcome:
        try:
            first = self._repo.update_status(
                claim.task_id,
                TaskStatus.SUCCESS,
                result=result,
                wake_waiters=spec.ordering is not None,
                now=self._clock(),
            )
        except SQLAlchemyError as exc:
            # The write happened but is unrecorded; running it again is harmless by design.
            return self._defer(spec, claim.task_id, "record success", exc)
        if not first:
            log.warning("task finished by another delivery first", extra={"attempt": claim.attempt})
        else:
            self._hand_off(spec, claim)
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
            hold = decision.delay_s > self._settings.long_wait_s
            recorded = self._repo.mark_retrying(
                claim.task_id,
                attempt=claim.attempt,
                error=message,
                error_kind=kind,
                next_attempt_at=now + timedelta(seconds=decision.delay_s),
                hold=hold,
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
                "held": hold,
            },
        )
        if hold:
            return Outcome(OutcomeKind.HELD, delay_s=decision.delay_s)
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
            wake_waiters=spec.ordering is not None,
            now=self._clock(),
        )
        if not recorded:
            return self._stale(spec, claim)
        self._hand_off(spec, claim)
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

    def _hand_off(self, spec: TaskSpec, claim: Claim) -> None:
        """Queue the customer's next write waiting for its turn: this one's place is free."""
        customer = claim.customer_id
        if self._publish is None or not self._fair.applies(spec.queue, customer):
            return
        assert customer is not None  # applies() says so
        try:
            released = self._fair_log.hand_off(
                spec.queue, customer, self._fair.bound_for(customer), self._clock()
            )
            if released is not None:
                self._publish([released])
                metrics.FAIR_SHARE_HANDOFFS.labels(spec.queue).inc()
        except SQLAlchemyError as exc:  # the task's outcome stands; the releaser gives the turn
            log.warning(
                "could not hand the fair-share turn on; the releaser will",
                extra={"error": type(exc).__name__},
            )

    def _stale(self, spec: TaskSpec, claim: Claim) -> Outcome:
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.STALE).inc()
        log.warning(
            "attempt outcome already recorded or superseded by a newer delivery; dropped",
            extra={"attempt": claim.attempt, "outcome": "stale"},
        )
        return Outcome(OutcomeKind.STALE)

    def _defer(self, spec: TaskSpec, task_id: str, step: str, exc: Exception) -> Outcome:
        # The log is unreachable: keep the message alive by publishing it again later.
        delay = min(
            backoff_delay(3, self.policy(spec), self._rng) + 1.0, self._settings.long_wait_s
        )
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.DEFERRED).inc()
        log.error(
            f"task log unreachable during {step}; message deferred",
            extra={"outcome": "deferred", "error": f"{type(exc).__name__}", "delay_s": delay},
        )
        return Outcome(OutcomeKind.DEFERRED, delay_s=delay)
