"""The core of a tracked task attempt, free of Celery: wait, claim, run, classify, record.

A delivery first checks what it may have to wait for: an open breaker or a rate limit (the
gate). Waits longer than `LONG_WAIT_S` are held in the task log without a broker message
(the releaser publishes the task when due); shorter ones come back as a countdown message.
Then the delivery claims the task under a lease (one live attempt per task) and, for an
ordered write, only if no earlier write of the same entity is unfinished, in one statement
(else it waits in the log for that write). It runs its body once and records the outcome.

Times are the database's: the claim returns its time, and the attempt's decisions (its
deadline) count from it with the monotonic clock; the log computes every due time itself.

A message with no task-log row is parked as failed (`unknown_message`) for an operator,
never run: running it would skip what acceptance did (its place in acceptance order, its
ordering, its sealed secrets, the caller-version check).

Celery glue (`tracking.task`) turns the returned `Outcome` into an ack or a delayed message.
A task that finishes hands its customer's fair-share place to the customer's next waiting
write (`tasklog.fairshare`), which the runner gives to its `publish` callable.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from services.core import metrics
from services.core.config import Settings
from services.core.errors import (
    ErrorKind,
    TaskError,
    TransientError,
    WaitForInFlight,
    classify,
    leaves_in_flight,
)
from services.core.guards.gate import Gate, Verdict
from services.core.retry import GiveUpReason, RetryPolicy, backoff_delay, decide
from services.core.secrecy import Redactor, Sealer, SealError
from services.core.taskdefs import TaskSpec, UnknownTaskError, spec_for
from services.core.tasklog import waits
from services.core.tasklog.fairshare import FairShareLog
from services.core.tasklog.models import TaskStatus, utcnow
from services.core.tasklog.ordering import OrderingQueries
from services.core.tasklog.repository import Claim, Refusal, TaskLogRepository
from services.core.tasklog.waits import Released, WaitLog
from services.core.tracking import unknown
from services.core.tracking.context import (
    COUNTDOWN,
    Body,
    Outcome,
    OutcomeKind,
    TaskContext,
)

__all__ = ["COUNTDOWN", "Body", "Outcome", "OutcomeKind", "TaskContext", "TaskRunner"]

log = logging.getLogger("services.tracking")

MAX_ERROR_CHARS = 4000


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
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        publish: Callable[[Sequence[Released]], None] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._repo = repo
        # The time the runner acts at: the database's (None), or a test's own moment.
        self._clock = clock
        self._fair_log = FairShareLog(repo.sessions)
        self._fair = settings.fair_share
        self._publish = publish
        self._waits = WaitLog(repo.sessions)
        self._ordering = OrderingQueries(repo.sessions)
        self._sealer = sealer
        self._settings = settings
        self._gate = gate
        self._rng = rng
        self._sleep = sleep

    def _at(self) -> datetime | None:
        return self._clock() if self._clock is not None else None

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
        if isinstance(claim, Outcome):
            return claim
        if not isinstance(claim, Claim):
            return self._refused(spec, claim)
        metrics.TASK_ATTEMPTS.labels(spec.name, spec.queue).inc()
        if claim.lost_attempts >= self._settings.poison_max_lost_attempts:
            # Its earlier deliveries died with their worker (SIGKILL, out of memory): the
            # lease ran out with nobody to record them. Quarantined, not run once more.
            why = f"{claim.lost_attempts} deliveries died with their worker"
            return self._give_up(spec, claim, why, ErrorKind.PERMANENT, GiveUpReason.POISON)
        return self._attempt(spec, claim, body)

    def _claim(
        self, spec: TaskSpec, task_id: str, message_payload: dict[str, Any], owner: str | None
    ) -> Claim | Refusal | Outcome:
        ordered = spec.ordering is not None and spec.ordering.waits
        for _ in range(3):  # a blocker that finishes meanwhile is looked for once more
            claim = self._repo.claim(
                task_id, lease_s=self.lease_s(spec), owner=owner, ordered=ordered, now=self._at()
            )
            if claim is Refusal.MISSING:
                return self._unknown(spec, task_id, message_payload, owner)
            if claim is not Refusal.BLOCKED:
                return claim
            waited = self._wait_for_earlier(spec, task_id)
            if waited is not None:
                return waited
        # Blockers keep finishing as fast as new ones appear: come back in a moment.
        return Outcome(OutcomeKind.PARKED, delay_s=min(1.0, self._settings.long_wait_s))

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
            origin_task_id=None if claim.origin_task_id == claim.task_id else claim.origin_task_id,
            idempotency_keys=claim.idempotency_keys or (claim.task_id,),
            _repo=self._repo,
        )
        started = time.monotonic()
        try:
            result = body(ctx, claim.payload)
        except WaitForInFlight as later:
            # The part it did went through: the downstream is up (a probe closes its breaker).
            if self._gate is not None:
                self._gate.report(spec, claim.payload, None)
            return self._settle(spec, claim, later)
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
        """Hold the task while an earlier write of the same entity is unfinished; None when
        that write finished meanwhile (the claim is tried again)."""
        blocker = self._ordering.blocker(task_id)
        if blocker is None:
            return None
        # A write that wakes its waiters when it finishes is looked at again rarely; a
        # catalog write does not (its hot path stays one statement), so a delete-all waiting
        # for one looks again after a client timeout.
        recheck = self._settings.order_recheck_s
        if spec.versioned:
            recheck = max(1.0, self._settings.settle_s(spec.downstreams))
        refusal = self._waits.hold(
            task_id,
            reason=waits.ORDER,
            delay_s=recheck,
            respect_deadline=False,  # never run before an earlier write, deadline or not
            waiting_for=blocker,
            now=self._at(),
        )
        if refusal is None:
            metrics.TASK_PARKED.labels(spec.name, waits.ORDER).inc()
            metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.HELD).inc()
            log.info(
                "task waits for an earlier write of the same entity",
                extra={"outcome": "held", "reason": waits.ORDER, "waiting_for": blocker},
            )
            return Outcome(OutcomeKind.HELD)
        if refusal in (Refusal.BLOCKER_DONE, Refusal.MISSING):
            return None
        return self._refused(spec, refusal)

    def _wait_for_gate(self, spec: TaskSpec, task_id: str, verdict: Verdict) -> Outcome | None:
        """Put the task off as the gate says; None when it must run now (its deadline)."""
        breaker = verdict.reason.startswith("breaker:")
        # A breaker wait ends when its probe succeeds, which only the releaser watches.
        in_log = breaker or verdict.wait_s > self._settings.long_wait_s
        reason = verdict.reason if breaker else waits.RATE_LIMIT
        refusal = self._waits.hold(
            task_id, reason=reason, delay_s=verdict.wait_s, in_log=in_log, now=self._at()
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
        """Record the attempt `owner` ran, whose process is gone, as a transient failure.

        Fenced on the lost attempt itself: if another delivery claimed the task since, or
        the attempt recorded its own outcome, nothing changes. A request the lost attempt
        sent may still land downstream for up to a client timeout: the retry waits that long
        in the log (no delivery may run it sooner), so that it fences what landed. With
        `task_fault` (its process was killed or hung, not stopped by a shutdown), the loss is
        counted; at POISON_MAX_LOST_ATTEMPTS the task fails as `poison` instead.
        """
        claim = self._repo.lost_attempt(task_id, owner=owner)
        if claim is None:
            return Outcome(OutcomeKind.STALE)
        message = f"attempt lost: {type(exc).__name__}: {exc}"
        if task_fault:
            count = self._repo.count_lost(task_id, attempt=claim.attempt)
            if count is not None and count >= self._settings.poison_max_lost_attempts:
                why = f"{message} ({count} attempts killed or hung their worker)"
                return self._give_up(spec, claim, why, ErrorKind.PERMANENT, GiveUpReason.POISON)
        lost = TransientError(message)
        settle = self._settings.settle_s(spec.downstreams)
        if settle <= 0:
            return self._failed_attempt(spec, claim, lost, Redactor())
        delay = max(settle, backoff_delay(claim.retry_count + 1, self.policy(spec), self._rng))
        message = f"{type(lost).__name__}: {lost}"[:MAX_ERROR_CHARS]
        try:
            recorded = self._repo.mark_retrying(
                task_id,
                attempt=claim.attempt,
                error=message,
                error_kind=ErrorKind.TRANSIENT,
                delay_s=delay,
                hold=True,
                reason=waits.IN_FLIGHT,
                now=self._at(),
            )
        except SQLAlchemyError as db_exc:
            return self._defer(spec, task_id, "record a lost attempt", db_exc)
        if not recorded:
            return self._stale(spec, claim)
        metrics.TASK_RETRIES.labels(spec.name, ErrorKind.TRANSIENT).inc()
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.HELD).inc()
        log.warning(
            "attempt lost with its process; retried once what it sent has settled",
            extra={"attempt": claim.attempt, "outcome": "held", "delay_s": round(delay, 3)},
        )
        return Outcome(OutcomeKind.HELD, delay_s=delay)

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
                now=self._at(),
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

    def _settle(self, spec: TaskSpec, claim: Claim, later: WaitForInFlight) -> Outcome:
        """The body did its part; the task comes back when writes in flight have landed."""
        try:
            recorded = self._repo.mark_retrying(
                claim.task_id,
                attempt=claim.attempt,
                error=None,
                error_kind=None,
                delay_s=later.delay_s,
                hold=True,
                reason=waits.IN_FLIGHT,
                counted=False,
                now=self._at(),
            )
        except SQLAlchemyError as exc:
            return self._defer(spec, claim.task_id, "hold for writes in flight", exc)
        if not recorded:
            return self._stale(spec, claim)
        metrics.TASK_PARKED.labels(spec.name, waits.IN_FLIGHT).inc()
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.HELD).inc()
        log.info(
            str(later),
            extra={"attempt": claim.attempt, "outcome": "held", "delay_s": later.delay_s},
        )
        return Outcome(OutcomeKind.HELD, delay_s=later.delay_s)

    def _unknown(
        self, spec: TaskSpec, task_id: str, message_payload: dict[str, Any], owner: str | None
    ) -> Claim | Refusal | Outcome:
        """A message with no task-log row: upkeep sent by beat is adopted, anything else is
        parked as failed for an operator (visible in the failed list, redrivable)."""
        if spec.adopts_unknown:
            self._repo.create(
                task_id=task_id,
                task_name=spec.name,
                queue=spec.queue,
                payload=message_payload,
                budget_s=self._settings.retry_budget_s(spec.queue),
            )
            return self._repo.claim(
                task_id, lease_s=self.lease_s(spec), owner=owner, now=self._at()
            )
        parked = unknown.park(self._repo, spec, task_id, message_payload)
        if not parked:  # a row appeared meanwhile (another delivery parked it)
            return Refusal.FINISHED
        reason = GiveUpReason.UNKNOWN_MESSAGE
        metrics.TASK_DEAD_LETTERED.labels(spec.name, spec.queue, reason).inc()
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, OutcomeKind.FAILED).inc()
        log.error(
            "message without a task-log row parked for an operator",
            extra={"outcome": "failed", "failure_reason": reason.value},
        )
        return Outcome(OutcomeKind.FAILED)

    def _refused(self, spec: TaskSpec, refusal: Refusal) -> Outcome:
        kind = OutcomeKind.DUPLICATE if refusal is Refusal.FINISHED else OutcomeKind.BUSY
        metrics.TASK_OUTCOMES.labels(spec.name, spec.queue, kind).inc()
        if kind is OutcomeKind.DUPLICATE:
            log.info("duplicate delivery of a finished task; skipped", extra={"outcome": kind})
        elif refusal is Refusal.NOT_DUE:
            log.info(
                "the task waits for an earlier attempt's requests to settle; this delivery is "
                "dropped (the releaser sends the task when it is due)",
                extra={"outcome": kind},
            )
        else:
            log.warning(
                "another delivery is running this task; this one is dropped",
                extra={"outcome": kind},
            )
        return Outcome(kind)

    def _succeeded(self, spec: TaskSpec, claim: Claim, result: Any) -> Outcome:
        try:
            first = self._repo.update_status(
                claim.task_id,
                TaskStatus.SUCCESS,
                result=result,
                wake_waiters=_wakes(spec),
                now=self._at(),
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
        # A request the attempt sent may still land downstream for a client timeout: the
        # retry (which fences what landed) or the task's end (which lets later writes of
        # the entity run) waits until it has.
        settle = self._settings.settle_s(spec.downstreams) if leaves_in_flight(exc) else 0.0
        try:
            if kind is ErrorKind.PERMANENT:
                return self._give_up(spec, claim, message, kind, GiveUpReason.PERMANENT_ERROR)
            retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
            decision = decide(
                now=self._clock() if self._clock is not None else _now(claim),
                deadline=claim.deadline_at,
                retries_done=claim.retry_count,
                policy=self.policy(spec),
                retry_after_s=retry_after,
                rng=self._rng,
            )
            if not decision.retry:
                assert decision.give_up is not None
                if settle > 0:
                    self._sleep(settle)
                return self._give_up(spec, claim, message, kind, decision.give_up)
            delay = max(decision.delay_s, settle)
            hold = settle > 0 or delay > self._settings.long_wait_s
            recorded = self._repo.mark_retrying(
                claim.task_id,
                attempt=claim.attempt,
                error=message,
                error_kind=kind,
                delay_s=delay,
                hold=hold,
                reason=waits.IN_FLIGHT if settle > 0 else waits.BACKOFF,
                now=self._at(),
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
                "delay_s": round(delay, 3),
                "held": hold,
            },
        )
        if hold:
            return Outcome(OutcomeKind.HELD, delay_s=delay)
        return Outcome(OutcomeKind.RETRY, delay_s=delay)

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
            wake_waiters=_wakes(spec),
            now=self._at(),
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
            released = self._fair_log.hand_off(spec.queue, customer, self._fair.bound_for(customer))
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


def _wakes(spec: TaskSpec) -> bool:
    """Whether finishing a task of `spec` wakes the tasks held for it (ordered writes that
    others wait for; catalog writes leave a waiting delete-all to look again)."""
    return spec.ordering is not None and not spec.versioned


def _now(claim: Claim) -> datetime:
    """The database's time now, as far as this attempt can tell without asking: its claim's
    time plus what the monotonic clock counted since."""
    if claim.claimed_at is None:
        return utcnow()
    return claim.claimed_at + timedelta(seconds=time.monotonic() - claim.claimed_mono)
