"""Publishing what a caller's transaction accepted, once that transaction has committed.

SQLAlchemy's Core has no event after a commit: `ConnectionEvents.commit` fires just before the
driver's COMMIT (its maintainers declined an after-commit one, sqlalchemy#4943), and a
Session's `after_commit` also fires when a SAVEPOINT is released, or when the session only
joined a transaction that someone else commits later. So we listen on the connection, where
every kind of caller's commit passes, and let the database say when the commit is over:

- the transaction holds a transaction-scoped advisory lock of ours from its first accepted
  task until it ends (one per transaction, not per task: the lock table is shared and small;
  taken again after a SAVEPOINT rollback, which may have released it);
- the connection's `commit` event (just before the COMMIT) hands the transaction's tasks to
  a publishing thread, which waits for those locks (PostgreSQL releases them only once the
  transaction has ended), reads which of the rows exist, which is those that committed, and
  publishes them at once;
- the `rollback` event forgets them. A rolled-back savepoint, or a COMMIT that failed, leaves
  rows that do not exist: nothing is published for them.

If the process dies between the commit and the publish, the task is pending with no message:
the reconciler publishes it once it has been quiet for RECONCILE_STALE_S.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, event, select, text
from sqlalchemy.orm import Session, sessionmaker

from services.core import metrics
from services.core.db import transaction
from services.core.enqueue import Enqueuer
from services.core.perprocess import per_process
from services.core.tasklog.models import TaskLog, TaskStatus

log = logging.getLogger("services.outbox")

# First key of the two-key advisory locks a caller's transaction holds while it runs (the
# commit-time numbering uses 2002260001, migration 0010); the second, a task id's hash.
PUBLISH_LOCK_SPACE = 2_002_260_002
# A commit still not over after this long is left to the reconciler.
COMMIT_WAIT_S = 30

_HOLD = text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))")
# In one order (of the keys), like every taker of several of these locks.
_WAIT = text(
    "SELECT pg_advisory_xact_lock(:space, key) FROM "
    "(SELECT DISTINCT hashtext(k) AS key FROM unnest(CAST(:keys AS text[])) AS k ORDER BY key) "
    "AS keys"
)

# A seam for tests that must stop a process after a caller's commit and before the publish
# (`tests/integration/test_outbox_catalog.py` SIGKILLs it there): called in the publishing
# thread with the ids of the committed tasks. None in every deployment.
before_publish: Callable[[list[str]], None] | None = None


class Publisher:
    """Publishes the committed tasks of a caller's transaction (see the module doc)."""

    def __init__(self, enqueuer: Enqueuer, sessions: sessionmaker[Session]) -> None:
        self._enqueuer = enqueuer
        self._sessions = sessions

    def after_commit(self, task_ids: list[str], locks: list[str]) -> None:
        """From a thread of ours: once the transaction holding `locks` has ended, publish
        those of `task_ids` it committed."""
        _threads().submit(self._publish, task_ids, locks)

    def _publish(self, task_ids: list[str], locks: list[str]) -> None:
        try:
            rows = self._committed(task_ids, locks)
        except Exception as exc:  # a thread of ours: nothing above it would see the error
            log.warning(
                "could not learn whether the caller's transaction committed; the reconciler "
                "publishes what it committed",
                extra={"tasks": len(task_ids), "error": type(exc).__name__},
            )
            return
        if rows and before_publish is not None:
            before_publish([row.task_id for row in rows])
        for row in rows:
            metrics.ENQUEUED.labels(row.task_name, row.queue).inc()
            self._enqueuer.publish(row.task_id, row.task_name, row.queue, row.payload)

    def _committed(self, task_ids: list[str], locks: list[str]) -> list[TaskLog]:
        # Pending and not held: what the caller committed and no one else has sent since (a
        # reconciler, or a releaser of a write held at acceptance).
        stmt = select(TaskLog).where(
            TaskLog.task_id.in_(task_ids), TaskLog.status == TaskStatus.PENDING, ~TaskLog.held
        )
        with transaction(self._sessions) as session:
            session.execute(text(f"SET LOCAL lock_timeout = '{COMMIT_WAIT_S}s'"))
            session.execute(_WAIT, {"space": PUBLISH_LOCK_SPACE, "keys": locks})
            return list(session.scalars(stmt))


@per_process
def _threads() -> ThreadPoolExecutor:
    # Not daemon threads: at interpreter exit, what was handed over is still published.
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="outbox-publish")


@dataclass
class _Transaction:
    """What the current transaction of one caller connection accepted."""

    tasks: list[tuple[Publisher, str]] = field(default_factory=list)
    # Keys of the publish locks taken in it; whether the last one surely still holds.
    locks: list[str] = field(default_factory=list)
    holding: bool = False


_transactions: weakref.WeakKeyDictionary[Connection, _Transaction] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def publish_after_commit(connection: Connection, publisher: Publisher, task_id: str) -> None:
    """Publish the task once the transaction of `connection` committed; never if it did not."""
    with _guard:
        current = _transactions.get(connection)
        if current is None:
            current = _transactions[connection] = _Transaction()
            event.listen(connection, "commit", _committing)
            event.listen(connection, "rollback", _rolled_back)
            event.listen(connection, "rollback_savepoint", _savepoint_rolled_back)
        take_lock = not current.holding
    if take_lock:
        connection.execute(_HOLD, {"space": PUBLISH_LOCK_SPACE, "key": task_id})
    with _guard:
        if take_lock:
            current.locks.append(task_id)
            current.holding = True
        current.tasks.append((publisher, task_id))


def _take(connection: Connection) -> _Transaction:
    # The transaction that ends; the connection may run more.
    with _guard:
        ended = _transactions.get(connection) or _Transaction()
        _transactions[connection] = _Transaction()
        return ended


def _committing(connection: Connection) -> None:
    ended = _take(connection)
    by_publisher: dict[Publisher, list[str]] = {}
    for publisher, task_id in ended.tasks:
        by_publisher.setdefault(publisher, []).append(task_id)
    for publisher, task_ids in by_publisher.items():
        publisher.after_commit(task_ids, ended.locks)


def _rolled_back(connection: Connection) -> None:
    _take(connection)


def _savepoint_rolled_back(connection: Connection, *_: Any) -> None:
    # The lock may have been taken inside the savepoint, and is gone with it: the next task
    # accepted takes one again (the tasks of the savepoint are gone too).
    with _guard:
        current = _transactions.get(connection)
        if current is not None:
            current.holding = False
