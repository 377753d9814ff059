"""Fair share per customer and queue, against the real PostgreSQL and Redis (no worker).

A customer past its bound of outstanding work on a queue has its further writes accepted at
once but kept waiting in the task log, with no broker message; a finishing task hands its
place to its customer's next waiting write; the releaser gives the places that come free
otherwise in weighted round robin across customers, in the order the messages go out. The
database of this module is its own: a release pass takes every waiting write of its log.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from redis import Redis
from sqlalchemy import ClauseElement, text

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.db import session_factory
from services.core.enqueue import Enqueued, Enqueuer
from services.core.errors import PermanentError
from services.core.outbox import Outbox
from services.core.search import payloads
from services.core.secrecy import Sealer
from services.core.taskdefs import spec_for
from services.core.tasklog.admission import admitting_insert
from services.core.tasklog.fairshare import HAND_OFF
from services.core.tasklog.models import TaskStatus
from services.core.tasklog.repository import TaskLogRepository
from services.core.tasklog.waits import Released, WaitLog
from services.core.tracking import TaskContext
from services.core.tracking.fairshare import FairTurns
from services.core.tracking.releaser import ReleaseConfig, Releaser
from services.core.tracking.runner import OutcomeKind, TaskRunner
from tests.support.databases import own_database
from tests.support.procs import wait_until
from tests.support.server import running_api

UPSERT = spec_for("es_upsert_product")


@pytest.fixture(scope="module")
def log() -> Iterator[TaskLogRepository]:
    """A task log of this module alone."""
    with own_database("fair") as url:
        yield TaskLogRepository(session_factory(url))


@pytest.fixture(autouse=True)
def empty(log: TaskLogRepository) -> None:
    """No task of an earlier test: a release pass would give it a turn."""
    with log.sessions() as session, session.begin():
        session.execute(text("DELETE FROM task_log"))


@pytest.fixture
def own(settings: Settings, log: TaskLogRepository) -> Settings:
    """The run's settings on this module's log, under a Redis prefix of this test alone (no
    worker reads it), with a bound of 2."""
    prefix = f"{settings.redis_key_prefix}fair-{uuid.uuid4().hex[:8]}:"
    url = log.sessions.kw["bind"].url.render_as_string(hide_password=False)
    return settings.model_copy(
        update={"redis_key_prefix": prefix, "database_url": url, "fair_share_bound": 2}
    )


@pytest.fixture
def client(own: Settings) -> Iterator[Redis]:
    redis = Redis.from_url(own.redis_url)
    yield redis
    redis.close()


def _customer() -> str:
    return f"c{uuid.uuid4().hex[:10]}"


def _write(enqueuer: Enqueuer, customer: str, n: int) -> Enqueued:
    payload = payloads.upsert(customer, f"p{n}", {"n": n}, with_embedding=False, version=None)
    return enqueuer.enqueue(UPSERT.name, payload, customer_id=customer)


def _queued(client: Redis, own: Settings, queue: str = "es") -> list[str]:
    raw = client.lrange(f"{own.redis_key_prefix}{queue}", 0, -1)
    return [json.loads(m)["headers"]["id"] for m in reversed(raw)]  # type: ignore[arg-type]


def _finish(log: TaskLogRepository, *task_ids: str) -> None:
    """Record tasks as done the way a worker would, without handing their turn on."""
    for task_id in task_ids:
        assert log.update_status(task_id, TaskStatus.SUCCESS, result={"result": "updated"})


def _releaser(log: TaskLogRepository, own: Settings, client: Redis) -> Releaser:
    config = ReleaseConfig(interval_s=1.0, queue_depth=100, batch=100, deadline_margin_s=5.0)
    return Releaser(
        waits=WaitLog(log.sessions),
        celery=make_celery_app(own),
        redis=client,
        key_prefix=own.redis_key_prefix,
        breakers={},
        config=config,
        turns=FairTurns(log.sessions, own.fair_share),
    )


def test_writes_past_the_bound_wait_in_the_log_without_a_message(
    log: TaskLogRepository, own: Settings, client: Redis
) -> None:
    enqueuer = Enqueuer(repo=log, celery=make_celery_app(own), settings=own)
    busy, quiet = _customer(), _customer()
    accepted = [_write(enqueuer, busy, n) for n in range(5)]
    assert [(a.published, a.waiting) for a in accepted] == [(True, False)] * 2 + [(False, True)] * 3
    # Another customer is under its bound: straight to the queue, as always.
    other = _write(enqueuer, quiet, 0)
    assert (other.published, other.waiting) == (True, False)
    assert _queued(client, own) == [accepted[0].task_id, accepted[1].task_id, other.task_id]
    for waiting in accepted[2:]:
        row = log.get_by_task_id(waiting.task_id)
        assert row is not None
        assert (row.status, row.held, row.wait_reason, row.published_at) == (
            TaskStatus.PENDING,
            True,
            "fair_share",
            None,
        )
    # A place comes free, but earlier writes of the customer wait: a new one goes after them.
    _finish(log, accepted[0].task_id)
    assert _write(enqueuer, busy, 5).waiting
    # Upkeep and writes without a customer are never made to wait.
    assert all(enqueuer.enqueue("canary_es", {}).published for _ in range(4))


def test_a_customer_sees_its_write_accepted_and_waiting_for_its_turn(own: Settings) -> None:
    customer = _customer()
    with running_api(own.model_copy(update={"fair_share_bound": 1})) as api:
        body = {"customer_id": customer, "data": {"name": "lamp"}}
        first = api.put("/api/v1/products/p-1", json=body)
        second = api.put("/api/v1/products/p-2", json=body)
        assert (first.status_code, second.status_code) == (202, 202)
        assert first.json()["message"] == "task queued"
        assert "waits its turn" in second.json()["message"]
        status = api.get(second.json()["status_url"]).json()
    assert status["status"] == "pending"
    assert status["waiting"] == {"reason": "fair_share", "waiting_for": None, "release_at": None}


def test_health_shows_outstanding_and_waiting_work_and_names_customers_to_services_only(
    log: TaskLogRepository, own: Settings
) -> None:
    enqueuer = Enqueuer(repo=log, celery=make_celery_app(own), settings=own)
    customer = _customer()
    for n in range(5):
        _write(enqueuer, customer, n)
    with running_api(own) as api:  # a service token
        body = api.get("/health/celery").json()
        anonymous = httpx.get(f"{api.base_url}/health/celery").json()
    es = body["fair_share"]["queues"]["es"]
    assert body["fair_share"]["bound"] == 2
    assert (es["outstanding"], es["waiting"]) == (2, 3)
    assert es["customers"] == [
        {"customer": customer, "outstanding": 2, "waiting": 3},
        {"customer": "(other)", "outstanding": 0, "waiting": 0},
    ]
    # Tenants do not see each other's names; the totals are for everyone.
    assert anonymous["fair_share"]["queues"]["es"] == {"outstanding": 2, "waiting": 3}
    assert set(anonymous["fair_share"]["queues"]) == {"es", "http"}


def test_a_finished_task_hands_its_place_to_its_customers_next_write(
    log: TaskLogRepository, own: Settings
) -> None:
    enqueuer = Enqueuer(repo=log, celery=make_celery_app(own), settings=own)
    customer = _customer()
    ids = [_write(enqueuer, customer, n).task_id for n in range(5)]
    handed: list[Released] = []
    runner = TaskRunner(
        repo=log,
        sealer=Sealer(own.secrets_key.get_secret_value()),
        settings=own,
        publish=handed.extend,
    )

    def body(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, str]:
        return {"result": "created"}

    def permanent(ctx: TaskContext, payload: dict[str, Any]) -> None:
        raise PermanentError("refused for good")

    assert runner.run(UPSERT, ids[0], {}, body).kind is OutcomeKind.SUCCESS
    assert [r.task_id for r in handed] == [ids[2]]
    # A write that failed for good frees its place too.
    assert runner.run(UPSERT, ids[1], {}, permanent).kind is OutcomeKind.FAILED
    assert [r.task_id for r in handed] == [ids[2], ids[3]]
    row = log.get_by_task_id(ids[3])
    assert row is not None and not row.held and row.published_at is not None
    # The customer is at its bound again (2 and 3 are queued): 4 keeps waiting.
    row = log.get_by_task_id(ids[4])
    assert row is not None and row.held and row.wait_reason == "fair_share"


def test_the_releaser_gives_free_places_in_round_robin_across_customers(
    log: TaskLogRepository, own: Settings, client: Redis
) -> None:
    enqueuer = Enqueuer(repo=log, celery=make_celery_app(own), settings=own)
    a, b, c = _customer(), _customer(), _customer()
    # A's whole import first, then B's, then C's.
    writes = {who: [_write(enqueuer, who, n).task_id for n in range(6)] for who in (a, b, c)}
    client.delete(f"{own.redis_key_prefix}es")
    releaser = _releaser(log, own, client)
    assert releaser.run_once().released == {}  # everyone is at its bound
    for who in (a, b, c):
        _finish(log, *writes[who][:2])  # their first two finished; nobody handed a turn on
    assert releaser.run_once().released == {"es": 6}
    order = [w for n in (2, 3) for w in (writes[a][n], writes[b][n], writes[c][n])]
    assert _queued(client, own) == order
    assert releaser.run_once().released == {}  # at their bounds again


def test_a_heavier_customer_gets_more_places_and_more_turns(
    log: TaskLogRepository, own: Settings, client: Redis
) -> None:
    a, b = _customer(), _customer()
    own = own.model_copy(update={"fair_share_weights": f"{b}=2"})
    enqueuer = Enqueuer(repo=log, celery=make_celery_app(own), settings=own)
    writes = {who: [_write(enqueuer, who, n).task_id for n in range(10)] for who in (a, b)}
    # B's bound is 4: it had four queued at once, A two.
    assert [log.get_by_task_id(w).held for w in writes[b][:5]] == [False] * 4 + [True]  # type: ignore[union-attr]
    client.delete(f"{own.redis_key_prefix}es")
    _finish(log, *writes[a][:2], *writes[b][:4])
    assert _releaser(log, own, client).run_once().released == {"es": 6}
    expected = [writes[b][4], writes[a][2], writes[b][5], writes[b][6], writes[a][3], writes[b][7]]
    assert _queued(client, own) == expected


def test_writes_accepted_inside_a_callers_transaction_wait_their_turn_too(
    log: TaskLogRepository, own: Settings, client: Redis
) -> None:
    enqueuer = Enqueuer(repo=log, celery=make_celery_app(own), settings=own)
    outbox = Outbox(enqueuer, log.sessions, own.tasklog_schema)
    customer = _customer()
    first = _write(enqueuer, customer, 0)  # one outstanding of its two
    with log.sessions() as session:
        accepted = [
            asyncio.run(
                outbox.enqueue(
                    session,
                    UPSERT.name,
                    payloads.upsert(
                        customer, f"t{n}", {"n": n}, with_embedding=False, version=None
                    ),
                    customer_id=customer,
                )
            )
            for n in (1, 2)
        ]
        session.commit()
    assert [a.waiting for a in accepted] == [False, True]
    # Once the caller committed, its write under the bound is published, the other is not.
    wait_until(lambda: accepted[0].task_id in _queued(client, own), 10, what="the publish")
    assert _queued(client, own) == [first.task_id, accepted[0].task_id]
    row = log.get_by_task_id(accepted[1].task_id)
    assert row is not None and row.held and row.wait_reason == "fair_share"


def _generic_plan(log: TaskLogRepository, sql: str, params: dict[str, Any]) -> str:
    """The plan PostgreSQL keeps for a prepared statement once it stops planning per call."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    def literal(value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, int):
            return str(value)
        return "'" + str(value).replace("'", "''") + "'"

    numbered = re.sub(r"%\((\w+)\)s", number, sql)
    args = ", ".join(literal(params.get(name)) for name in names)
    with log.sessions() as session:
        session.execute(text("SET plan_cache_mode = force_generic_plan"))
        session.execute(text(f"PREPARE fair_plan AS {numbered}"))
        rows = session.execute(text(f"EXPLAIN EXECUTE fair_plan({args})"))
        plan = "\n".join(r[0] for r in rows)
        session.execute(text("DEALLOCATE fair_plan"))
        session.rollback()
    return plan


def test_deciding_a_turn_reads_the_fair_share_indexes_on_a_large_log(
    log: TaskLogRepository, own: Settings
) -> None:
    # 100,000 finished rows, and a customer with 5,000 writes waiting and 8 outstanding.
    with log.sessions() as session, session.begin():
        session.execute(
            text(
                "INSERT INTO task_log (task_id, task_name, queue, payload, status, retry_count,"
                " attempts, deadline_at, created_at, updated_at, seq, held, customer_id) "
                "SELECT 'plan-' || n, 'es_upsert_product', 'es', '{}', "
                " CASE WHEN n <= 100000 THEN 'success' ELSE 'pending' END, 0, 1,"
                " now(), now(), now(), nextval('task_log_seq'), n > 100008,"
                " CASE WHEN n <= 100000 THEN 'c' || (n % 500) ELSE 'plan-big' END "
                "FROM generate_series(1, 105008) AS n"
            )
        )
        session.execute(
            text(
                "UPDATE task_log SET wait_reason = 'fair_share' "
                "WHERE task_id LIKE 'plan-%' AND held"
            )
        )
        session.execute(text("ANALYZE task_log"))
    try:
        dialect = log.sessions().get_bind().dialect
        insert = admitting_insert(("task_id", "task_name", "queue", "customer_id", "held"))
        compiled = cast(ClauseElement, insert.statement).compile(dialect=dialect)
        params = {
            **compiled.params,
            "task_id": "plan-new",
            "queue": "es",
            "customer_id": "plan-big",
            "fair_bound": 8,
        }
        plan = _generic_plan(log, str(compiled), params)
        assert "ix_task_log_fair_counted" in plan, plan
        assert "ix_task_log_fair_waiting" in plan, plan
        assert "Seq Scan" not in plan, plan
        # What a worker runs when one of this customer's tasks finished.
        compiled = cast(ClauseElement, HAND_OFF.statement).compile(dialect=dialect)
        params = {"fair_queue": "es", "fair_customer": "plan-big", "bound": 8, "at": None}
        plan = _generic_plan(log, str(compiled), params)
        assert "ix_task_log_fair_counted" in plan, plan
        assert "ix_task_log_fair_waiting" in plan, plan
        assert "Seq Scan" not in plan, plan
    finally:
        with log.sessions() as session, session.begin():
            session.execute(text("DELETE FROM task_log"))
