"""Turns of fair share: which waiting writes the releaser queues next, and publishing them.

The releaser asks `FairTurns.turns(queue, room)` each pass: every customer with writes
waiting on the queue gets as many places as its bound leaves free, its oldest writes first,
and the customers take turns in weighted round robin, the one whose oldest write waits
longest first (`fairness.interleave`). The messages go out in that order, so the queue
alternates between customers instead of serving one customer's writes in a block. With fair
share off (`FAIR_SHARE_BOUND=0`), writes still waiting from before are queued freely.
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from services.core.fairness import FairShare, interleave
from services.core.taskdefs import Queue
from services.core.tasklog.fairshare import FairShareLog
from services.core.tasklog.waits import Candidate, Released


class FairTurns:
    """Places free in customers' fair shares, given in round robin."""

    def __init__(self, sessions: sessionmaker[Session], fair: FairShare) -> None:
        self._log = FairShareLog(sessions)
        self._fair = fair

    def turns(self, queue: Queue, room: int) -> list[Candidate]:
        """Waiting writes to queue now, at most `room`, in the order they should go out."""
        if room <= 0:
            return []
        waiting = self._log.waiting_customers(queue)
        if not waiting:
            return []
        customers = [customer for customer, _ in waiting]
        counted = self._log.counted(queue, customers) if self._fair.bound > 0 else {}
        places: dict[str, list[Candidate]] = {}
        for customer in customers:
            free = room
            if self._fair.bound > 0:
                free = min(room, self._fair.bound_for(customer) - counted.get(customer, 0))
            if free > 0:
                places[customer] = self._log.first_waiting(queue, customer, free)
        return interleave(places, self._fair)[:room]


def in_turn_order(released: Sequence[Released], turns: Sequence[Candidate]) -> list[Released]:
    """The released tasks in the order of `turns` (the log returns them by acceptance)."""
    position = {c.task_id: n for n, c in enumerate(turns)}
    return sorted(released, key=lambda r: position.get(r.task_id, len(position)))


def publish_released(celery: Celery, released: Sequence[Released]) -> None:
    """Publish tasks taken out of the log, in the order given, on one producer."""
    if not released:
        return
    with celery.producer_or_acquire() as producer:
        for task in released:
            celery.send_task(
                task.task_name,
                kwargs={"payload": task.payload},
                task_id=task.task_id,
                queue=task.queue,
                producer=producer,
            )
