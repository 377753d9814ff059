"""Retry decisions: capped exponential backoff with full jitter, bounded by a deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class GiveUpReason(StrEnum):
    """Why a task stopped retrying."""

    PERMANENT_ERROR = "permanent_error"
    DEADLINE_EXHAUSTED = "deadline_exhausted"
    MAX_RETRIES_EXHAUSTED = "max_retries_exhausted"
    # A tracked message with no task-log row: parked for an operator, never run.
    UNKNOWN_MESSAGE = "unknown_message"
    # A message no worker can run (it cannot be decoded or handed to the pool), or one whose
    # delivery killed or hung its worker POISON_MAX_LOST_ATTEMPTS times: quarantined.
    POISON = "poison"


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a task may retry."""

    base_s: float
    cap_s: float
    max_retries: int | None = None


@dataclass(frozen=True)
class RetryDecision:
    """Either retry after delay_s, or give up for a reason."""

    retry: bool
    delay_s: float = 0.0
    give_up: GiveUpReason | None = None


def backoff_delay(
    retry_number: int, policy: RetryPolicy, rng: random.Random | None = None
) -> float:
    """Full-jitter delay before retry number `retry_number` (0-based).

    Full jitter (a uniform draw below the exponential ceiling) spreads retries of a burst of
    failed tasks, so a recovering downstream is not hit by all of them at once.
    """
    ceiling = min(policy.cap_s, policy.base_s * (2.0 ** min(retry_number, 62)))
    return (rng or random).uniform(0.0, ceiling)


def decide(
    *,
    now: datetime,
    deadline: datetime,
    retries_done: int,
    policy: RetryPolicy,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Decide what follows a transient failure."""
    if policy.max_retries is not None and retries_done >= policy.max_retries:
        return RetryDecision(False, give_up=GiveUpReason.MAX_RETRIES_EXHAUSTED)
    remaining = (deadline - now).total_seconds()
    if remaining <= 0:
        return RetryDecision(False, give_up=GiveUpReason.DEADLINE_EXHAUSTED)
    delay = backoff_delay(retries_done, policy, rng)
    if retry_after_s is not None:
        # The downstream said when to come back; honour it, within the cap.
        delay = max(delay, min(retry_after_s, policy.cap_s))
    # The last attempt happens at the deadline, not after it.
    return RetryDecision(True, delay_s=min(delay, remaining))


def deadline_from(accepted_at: datetime, budget_s: int) -> datetime:
    """The moment a task accepted at `accepted_at` stops retrying."""
    return accepted_at + timedelta(seconds=budget_s)
