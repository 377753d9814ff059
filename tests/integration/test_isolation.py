"""The task log works the same whatever isolation level the server defaults to.

Its guarded transitions are written for READ COMMITTED: a write that waited for a lock sees
the row as the other transaction left it, and the wake-up of a finishing task sees every
hold committed before it. Many servers default to `repeatable read` (or `serializable`),
so the pools pin READ COMMITTED themselves, and a transaction refused for a serialization
failure or a deadlock is run again rather than lost.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import Session

from services.core import db
from services.core.tasklog import migrate, waits
from services.core.tasklog.models import TaskLog, TaskStatus, utcnow
from services.core.tasklog.repository import Claim, Refusal, TaskLogRepository
from services.core.tasklog.waits import WaitLog
from tests.conftest import create_pg_database, drop_pg_database
from tools.localservices import admin_execute

RACES = 300


@pytest.fixture(scope="module")
def repeatable_read() -> Iterator[str]:
    """A task log on a database whose sessions default to REPEATABLE READ."""
    name = f"durable_rr_{uuid.uuid4().hex[:8]}"
    url = create_pg_database(name)
    admin_execute(
        f"ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'"
    )
    migrate.upgrade(url)
    yield url
    db.dispose_engines(url)
    drop_pg_database(name)


def _task(repo: TaskLogRepository, **extra: object) -> str:
    task_id = str(uuid.uuid4())
    repo.create(
        task_id=task_id,
        task_name="faq_update",
        queue="http",
        payload={"customer_id": "c1", "faq_id": "f1"},
        deadline_at=utcnow() + timedelta(hours=1),
        order_scope="faq:c1",
        order_key="f1",
        **extra,  # type: ignore[arg-type]
    )
    return task_id


def test_the_pools_pin_read_committed(repeatable_read: str) -> None:
    sessions = db.session_factory(repeatable_read)
    with db.transaction(sessions) as session:
        assert session.scalar(text("SHOW transaction_isolation")) == "read committed"
    with db.single_statement(sessions) as session:
        assert session.scalar(text("SHOW transaction_isolation")) == "read committed"


def test_no_wake_up_is_lost_between_a_hold_and_its_blocker_finishing(
    repeatable_read: str,
) -> None:
    repo = TaskLogRepository(db.session_factory(repeatable_read))
    holds = WaitLog(repo.sessions)
    lost: list[str] = []
    errors: list[BaseException] = []
    for _ in range(RACES):
        blocker, waiter = _task(repo), _task(repo)
        claim = repo.claim(blocker, lease_s=60)
        assert isinstance(claim, Claim)
        start = threading.Barrier(2)

        def hold(
            waiter: str = waiter, blocker: str = blocker, start: threading.Barrier = start
        ) -> None:
            start.wait()
            try:
                holds.hold(
                    waiter,
                    reason=waits.ORDER,
                    until=utcnow() + timedelta(hours=1),
                    now=utcnow(),
                    respect_deadline=False,
                    waiting_for=blocker,
                )
            except BaseException as exc:
                errors.append(exc)

        def finish(blocker: str = blocker, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                repo.update_status(blocker, TaskStatus.SUCCESS, result={}, wake_waiters=True)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hold), threading.Thread(target=finish)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        row = repo.get_by_task_id(waiter)
        assert row is not None
        # Held for the finished blocker with its wake-up an hour away: nothing releases it.
        if row.held and row.next_attempt_at is not None and row.next_attempt_at > utcnow():
            lost.append(waiter)
    assert (len(lost), [type(e).__name__ for e in errors]) == (0, [])


def test_a_transaction_refused_for_a_serialization_failure_is_run_again(
    repeatable_read: str,
) -> None:
    sessions = db.session_factory(repeatable_read)
    repo = TaskLogRepository(sessions)
    task_id = _task(repo)
    runs: list[int] = []
    inside = threading.Event()
    other_done = threading.Event()

    def bump(session: Session) -> None:
        # SERIALIZABLE on purpose, for this transaction only: the concurrent update below
        # makes its first run fail with a serialization failure.
        session.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
        session.scalar(text("SELECT retry_count FROM task_log WHERE task_id = :t"), {"t": task_id})
        runs.append(1)
        if len(runs) == 1:
            inside.set()
            other_done.wait(10)
        session.execute(
            update(TaskLog)
            .where(TaskLog.task_id == task_id)
            .values(retry_count=TaskLog.retry_count + 1)
        )

    def other() -> None:
        inside.wait(10)
        assert repo.increment_retry(task_id)
        other_done.set()

    side = threading.Thread(target=other)
    side.start()
    db.run_transaction(sessions, bump)
    side.join(10)
    row = repo.get_by_task_id(task_id)
    assert row is not None and row.retry_count == 2 and len(runs) == 2
    assert repo.claim(task_id) is not Refusal.MISSING
