"""What a task body sees of its attempt, and how a delivery ended."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.core.secrecy import Redactor
from services.core.tasklog.repository import TaskLogRepository


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
    # Acceptance order of the write (kept by manual retries of catalog writes): its version.
    seq: int = 0
    # The task a manual retry retries (None for a first try).
    origin_task_id: str | None = None
    # The Idempotency-Keys of the write, tried in order (a redrive's earlier ones first).
    idempotency_keys: tuple[str, ...] = ()
    _repo: TaskLogRepository | None = field(default=None, repr=False)

    @property
    def idempotency_key(self) -> str:
        """The key of this write itself (the last of `idempotency_keys`)."""
        return self.idempotency_keys[-1] if self.idempotency_keys else self.task_id

    @property
    def may_have_written(self) -> bool:
        """Whether an earlier attempt (of this task, or of the write a retry re-sends) may
        have written downstream already, unseen: what it may have written is fenced."""
        return self.attempt > 1 or self.origin_task_id is not None

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
