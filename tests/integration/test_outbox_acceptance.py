"""Accepting writes inside a caller's own transaction (the outbox), on real PostgreSQL.

The caller is an application with a table of its own in the task log's database; it passes
each kind of SQLAlchemy transaction object. No worker runs here: the tests read the task log,
and the broker's queues under a Redis prefix no worker reads. The end-to-end half (workers,
the stand-ins, a killed process) is test_outbox_catalog.py and test_outbox_chatbot.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import create_engine, select

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.db import session_factory
from services.core.enqueue import Enqueuer, IdempotencyConflict
from services.core.outbox import NoTaskLog, NotATransaction, publisher
from services.core.outbox.publisher import PUBLISH_LOCK_SPACE
from services.core.search.caller_versions import REFUSED
from services.core.search.catalog import PRODUCTS
from services.core.search.service import CatalogService
from services.core.secrecy import Sealer
from services.core.tasklog.models import TaskLog, utcnow
from services.core.tasklog.reconciler import Reconciler
from services.core.tasklog.repository import TaskLogRepository
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.databases import own_database
from tests.support.flow import enqueuer
from tests.support.outbox import (
    KINDS,
    Callers,
    Gate,
    advisory_locks,
    backend_pid,
    callers,
    waits_on,
)
from tests.support.procs import wait_until
from tests.support.server import parked


@pytest.fixture(scope="module")
def db(pg_database: str) -> Iterator[Callers]:
    """Callers of the run's task-log database."""
    with callers(pg_database) as made:
        yield made


@pytest.fixture
def parked_settings(settings: Settings) -> Settings:
    """The run's settings, publishing under a Redis prefix of this test that no worker reads."""
    return parked(settings, f"outbox-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def service(parked_settings: Settings) -> CatalogService:
    """The catalog facade's service, publishing under the parked prefix."""
    return CatalogService(parked_settings, enqueuer(parked_settings))


@pytest.fixture
def repo(pg_database: str) -> TaskLogRepository:
    return TaskLogRepository(session_factory(pg_database))


def customer() -> str:
    return f"cust-{uuid.uuid4().hex[:10]}"


def upsert(service: CatalogService, customer_id: str, item: str, name: str, **options: Any) -> Any:
    """The write a caller queues: upsert_product(customer, {...}, async_mode=True, ...)."""
    data = {"id": item, "name": name}
    version = options.pop("version", None)
    api_key = options.pop("api_key", None)
    return lambda session: service.upsert(
        PRODUCTS, customer_id, data, False, api_key, True, version, None, session=session, **options
    )


def published(redis: Redis, settings: Settings) -> list[str]:
    """Task ids of the messages waiting under the settings' prefix, once per message."""
    raw = redis.lrange(f"{settings.redis_key_prefix}es", 0, -1)
    return [json.loads(m)["headers"]["id"] for m in raw]  # type: ignore[union-attr]


def wait_published(redis: Redis, settings: Settings, task_id: str) -> list[str]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: task_id in published(redis, settings) and published(redis, settings),
        10,
        what=f"the message of {task_id}",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_commit_records_the_write_with_the_callers_change_and_publishes_it_once(
    db: Callers,
    service: CatalogService,
    repo: TaskLogRepository,
    redis: Redis,
    parked_settings: Settings,
    kind: str,
) -> None:
    cust, item = customer(), f"p-{kind}"
    caller = db.open(kind)
    caller.set_name(item, "Desk lamp")
    queued = caller.write(upsert(service, cust, item, "Desk lamp"))
    assert set(queued) == {"status", "task_id"} and queued["status"] == "queued"
    # Inside the transaction: no one else sees the task, and nothing is published.
    assert repo.get_by_task_id(queued["task_id"]) is None
    assert published(redis, parked_settings) == []
    caller.commit()
    assert db.name_of(item) == "Desk lamp"
    row = repo.get_by_task_id(queued["task_id"])
    assert row is not None and row.status == "pending" and not row.seq_pending
    assert row.payload["data"]["name"] == "Desk lamp"
    assert wait_published(redis, parked_settings, row.task_id) == [row.task_id]


@pytest.mark.parametrize("kind", KINDS)
def test_a_rollback_leaves_no_row_and_publishes_nothing(
    db: Callers,
    service: CatalogService,
    repo: TaskLogRepository,
    redis: Redis,
    parked_settings: Settings,
    kind: str,
) -> None:
    cust, item = customer(), f"r-{kind}"
    caller = db.open(kind)
    caller.set_name(item, "Never")
    gone = caller.write(upsert(service, cust, item, "Never"))["task_id"]
    caller.rollback()
    # A write committed after it is published; the rolled-back one never was.
    later = db.open(kind)
    kept = later.write(upsert(service, cust, "other", "Kept"))["task_id"]
    later.commit()
    assert wait_published(redis, parked_settings, kept) == [kept]
    assert repo.get_by_task_id(gone) is None and db.name_of(item) is None


def test_a_savepoint_rolled_back_takes_its_writes_with_it(
    db: Callers,
    service: CatalogService,
    repo: TaskLogRepository,
    redis: Redis,
    parked_settings: Settings,
) -> None:
    cust = customer()
    caller = db.open("session")
    session = caller.handle
    nested = session.begin_nested()
    gone = [caller.write(upsert(service, cust, item, "gone"))["task_id"] for item in "ab"]
    nested.rollback()
    kept = caller.write(upsert(service, cust, "c", "kept"))["task_id"]
    # The commit is held up (by a trigger of the caller's): the publisher must wait for it.
    # It can: the transaction's publish lock, first taken inside the savepoint and gone with
    # it, was taken again by the write after it.
    with Gate(db) as gate:
        caller.execute("INSERT INTO caller_gate VALUES (1)")
        pid = backend_pid(caller)
        committing = threading.Thread(target=caller.commit)
        committing.start()
        gate.wait_stalled(pid)
    committing.join(10)
    assert wait_published(redis, parked_settings, kept) == [kept]
    assert [repo.get_by_task_id(t) for t in gone] == [None, None]


def test_a_transaction_holds_one_publish_lock_however_many_writes_it_queues(
    db: Callers, service: CatalogService, redis: Redis, parked_settings: Settings
) -> None:
    caller = db.open("connection")
    # Writes of 40 customers: one customer's 40 would mostly wait for their fair-share turn
    # (README, "Fair share per customer"), unpublished until their turn comes.
    queued = [caller.write(upsert(service, customer(), f"p{n}", "x"))["task_id"] for n in range(40)]
    held = advisory_locks(db, backend_pid(caller), PUBLISH_LOCK_SPACE, granted=True)
    caller.commit()
    assert held == 1
    wait_until(lambda: set(queued) <= set(published(redis, parked_settings)), 10, what="all 40")
    assert sorted(published(redis, parked_settings)) == sorted(queued)


def test_commits_of_one_customer_take_their_numbers_in_commit_order(
    db: Callers, service: CatalogService, pg_database: str, repo: TaskLogRepository
) -> None:
    """The number is taken while the transaction commits, under a lock of the customer that
    PostgreSQL releases only once the commit is over: a transaction that commits while
    another one of the customer is still committing (here: held up by a deferred trigger of
    the caller's own) waits for it, so the later commit always gets the later number."""
    cust = customer()
    first, second = db.open("session"), db.open("session")
    with Gate(db) as gate:
        one = first.write(upsert(service, cust, "p", "first called, last committed"))["task_id"]
        first.execute("INSERT INTO caller_gate VALUES (1)")
        two = second.write(upsert(service, cust, "p", "second called, first to commit"))
        first_pid, second_pid = backend_pid(first), backend_pid(second)
        threads = {
            name: threading.Thread(target=caller.commit)
            for name, caller in (("first", first), ("second", second))
        }
        threads["first"].start()
        # The first has numbered its write (its trigger event was queued before the gate's)
        # and waits at the caller's gate, inside its commit.
        gate.wait_stalled(first_pid)
        threads["second"].start()
        wait_until(
            lambda: not threads["second"].is_alive() or waits_on(db, second_pid, SEQ_LOCK),
            10,
            what="the second commit to end or wait",
        )
        second_committed_first = not threads["second"].is_alive()
    for thread in threads.values():
        thread.join(10)
    rows = [repo.get_by_task_id(one), repo.get_by_task_id(two["task_id"])]
    last = one if second_committed_first else two["task_id"]
    assert max(rows, key=lambda r: r.seq if r else -1).task_id == last  # type: ignore[union-attr]
    assert not second_committed_first  # it waited for the first commit to be over


# The first key of the locks the commit-time numbering takes (migration 0010).
SEQ_LOCK = 2002260001


def test_the_reconciler_publishes_a_committed_write_left_unpublished_once_quiet_since_commit(
    parked_settings: Settings,
) -> None:
    """The process that committed never published (here: its publishing thread is held
    before the publish): the reconciler publishes the task once it has been quiet for
    RECONCILE_STALE_S, counted from the commit, not from the call; a transaction that was
    open for an hour does not commit a row the reconciler takes for long forgotten."""
    held, release = threading.Event(), threading.Event()

    def hold_publish(task_ids: list[str]) -> None:
        held.set()
        release.wait(30)

    with own_database("reconcile") as url, callers(url) as db:
        settings = parked_settings.model_copy(update={"database_url": url})
        repo = TaskLogRepository(session_factory(url))
        celery = make_celery_app(settings)
        an_hour_ago = lambda: utcnow() - timedelta(hours=1)  # noqa: E731
        service = CatalogService(
            settings, Enqueuer(repo=repo, celery=celery, settings=settings, clock=an_hour_ago)
        )
        client = Redis.from_url(settings.redis_url)
        reconciler = Reconciler(
            sessions=repo.sessions,
            celery=celery,
            redis=client,
            key_prefix=settings.redis_key_prefix,
            stale_s=600,
            processing_stale_s=settings.processing_stale_s,
        )
        publisher.before_publish = hold_publish
        try:
            caller = db.open("session")
            task_id = caller.write(upsert(service, customer(), "p", "late"))["task_id"]
            caller.commit()
            wait_until(held.is_set, 10, what="the publish to be held")
            assert reconciler.run_once().republished == []
            row = repo.get_by_task_id(task_id)
            assert row is not None
            quiet = row.updated_at + timedelta(seconds=601)
            assert reconciler.run_once(now=quiet).republished == [task_id]
            assert published(client, settings) == [task_id]
        finally:
            publisher.before_publish = None
            release.set()
            client.close()


def test_a_database_without_the_task_log_is_refused_and_the_callers_transaction_goes_on(
    service: CatalogService,
) -> None:
    name = f"durable_nolog_{uuid.uuid4().hex[:8]}"
    url = create_pg_database(name)
    try:
        with callers(url) as elsewhere:
            caller = elsewhere.open("session")
            caller.set_name("p", "still mine")
            with pytest.raises(NoTaskLog, match=r"has no task log.*migrate upgrade"):
                caller.write(upsert(service, customer(), "p", "x"))
            caller.commit()
            assert elsewhere.name_of("p") == "still mine"
    finally:
        drop_pg_database(name)


def test_another_deployments_task_log_is_refused(service: CatalogService) -> None:
    with own_database("otherlog") as url, callers(url) as elsewhere:
        caller = elsewhere.open("connection")
        with pytest.raises(NoTaskLog, match="not the one this deployment's workers read"):
            caller.write(upsert(service, customer(), "p", "x"))
        caller.rollback()
        engine = create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(select(TaskLog.id)).all() == []
        engine.dispose()


def test_what_cannot_join_a_transaction_is_refused(
    db: Callers, service: CatalogService, pg_database: str
) -> None:
    caller = db.open("session")
    with pytest.raises(ValueError, match="async_mode=False writes now"):
        caller.write(
            lambda s: service.upsert(
                PRODUCTS, customer(), {"id": "p"}, False, None, False, None, None, session=s
            )
        )
    caller.rollback()
    autocommit = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection, pytest.raises(NotATransaction):
        asyncio.run(upsert(service, customer(), "p", "x")(connection))
    autocommit.dispose()
    with pytest.raises(TypeError, match="Session, Connection, AsyncSession or AsyncConnection"):
        asyncio.run(upsert(service, customer(), "p", "x")(pg_database))


def test_an_idempotency_key_replays_inside_and_across_transactions(
    db: Callers,
    service: CatalogService,
    repo: TaskLogRepository,
    redis: Redis,
    parked_settings: Settings,
) -> None:
    cust = customer()
    caller = db.open("async_session")
    first = caller.write(upsert(service, cust, "p", "one", idempotency_key="k1"))["task_id"]
    again = caller.write(upsert(service, cust, "p", "one", idempotency_key="k1"))["task_id"]
    assert again == first
    with pytest.raises(IdempotencyConflict):
        caller.write(upsert(service, cust, "p", "another", idempotency_key="k1"))
    caller.set_name("p", "one")  # the refused repeat left the transaction usable
    caller.commit()
    assert db.name_of("p") == "one"
    assert wait_published(redis, parked_settings, first) == [first]
    # A key used before, by a committed task: the later transaction gets that task.
    later = db.open("session")
    assert later.write(upsert(service, cust, "p", "one", idempotency_key="k1"))["task_id"] == first
    later.commit()
    with repo.sessions() as session:
        rows = session.scalars(select(TaskLog.task_id).where(TaskLog.customer_id == cust)).all()
    assert rows == [first]


def test_caller_versions_are_kept_only_by_writes_that_commit(
    db: Callers, service: CatalogService, repo: TaskLogRepository
) -> None:
    cust = customer()
    rolled = db.open("session")
    rolled.write(upsert(service, cust, "p", "v5", version=5))
    rolled.rollback()
    ids = []
    for version in (3, 2):
        caller = db.open("connection")
        ids.append(caller.write(upsert(service, cust, "p", f"v{version}", version=version)))
        caller.commit()
    rows = [repo.get_by_task_id(queued["task_id"]) for queued in ids]
    assert [r.payload.get("superseded") for r in rows if r] == [None, REFUSED]


def test_a_secret_is_sealed_in_the_row_and_never_in_the_message(
    db: Callers,
    service: CatalogService,
    repo: TaskLogRepository,
    redis: Redis,
    parked_settings: Settings,
) -> None:
    key = f"sk-outbox-{uuid.uuid4().hex}"
    caller = db.open("async_connection")
    task_id = caller.write(upsert(service, customer(), "p", "x", api_key=key))["task_id"]
    caller.commit()
    wait_published(redis, parked_settings, task_id)
    row = repo.get_by_task_id(task_id)
    assert row is not None and row.sealed_secrets and key not in row.sealed_secrets
    assert key not in json.dumps(row.payload)
    sealer = Sealer(parked_settings.secrets_key.get_secret_value())
    assert sealer.unseal(row.sealed_secrets) == {"api_key": key}
    messages = redis.lrange(f"{parked_settings.redis_key_prefix}es", 0, -1)
    assert messages and not any(key in m for m in messages)  # type: ignore[union-attr]
