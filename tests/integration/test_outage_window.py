"""The plan's retry settings lose writes in a 40 s outage; our defaults deliver them all.

The plan retries ES tasks 5 times with exponential backoff from 1 s and full jitter (Celery's
`retry_backoff=True`, `retry_jitter=True`): its retries are over within 1+2+4+8+16 = 31 s at
the latest. Two benches run side by side through the same 40 s Elasticsearch outage, each
with its own queues, worker and stand-in: one with the plan's settings, one with our defaults
(a 24 h deadline, backoff up to 600 s, breakers with their default periods).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from services.core.config import get_settings
from services.core.db import dispose_engines
from services.core.tasklog import migrate
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.catalog import Bench, catalog_bench, new_customer
from tests.support.flow import all_finished
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow
OUTAGE_S = 40
WRITES = 20

PLAN = {
    "ES_MAX_RETRIES": "5",
    "RETRY_BACKOFF_BASE_S": "1",
    "RETRY_BACKOFF_MAX_S": "600",
    "BREAKER_ENABLED": "false",
    # The plan has no fair share: its 20 writes all start at once, so all of them run out of
    # retries within the outage (with a bound, the writes past it would start only as the
    # first ones fail, and the last would still be retrying when Elasticsearch returns).
    "FAIR_SHARE_BOUND": "0",
}
# The API decides whether a write waits its fair-share turn: the plan's API has none either.
API = {"plan": {"fair_share_bound": 0}, "ours": {}}
# Our defaults, spelled out because the test run shortens some of them for other tests.
OURS = {
    "RETRY_BACKOFF_BASE_S": "1",
    "RETRY_BACKOFF_MAX_S": "600",
    "BREAKER_OPEN_S": "30",
    "BREAKER_OPEN_MAX_S": "300",
}


@dataclass
class Run:
    """One bench, the writes it accepted and when."""

    bench: Bench
    customer: str
    task_ids: list[str]


@pytest.fixture(scope="module")
def benches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Bench]]:
    settings = get_settings()
    with ExitStack() as stack:
        started = {}
        for name, env in (("plan", PLAN), ("ours", OURS)):
            # Two deployments: queues and a task log of their own each.
            database = f"durable_window_{name}_{uuid.uuid4().hex[:8]}"
            url = create_pg_database(database)
            stack.callback(drop_pg_database, database)
            migrate.upgrade(url)
            stack.callback(dispose_engines, url)
            started[name] = stack.enter_context(
                catalog_bench(
                    tmp_path_factory.mktemp(f"window-{name}"),
                    worker_env=env,
                    redis_key_prefix=f"{settings.redis_key_prefix}window-{name}:",
                    database_url=url,
                    api_settings=API[name],
                )
            )
        yield started


def _write(bench: Bench) -> Run:
    customer = new_customer()
    task_ids = []
    for n in range(WRITES):
        answer = bench.api.put(
            f"/api/v1/services/w{n}", json={"customer_id": customer, "data": {"name": f"w{n}"}}
        )
        assert answer.status_code == 202, answer.text
        task_ids.append(answer.json()["task_id"])
    return Run(bench, customer, task_ids)


def test_a_40_s_outage_fails_the_plans_writes_and_not_ours(benches: dict[str, Bench]) -> None:
    for bench in benches.values():
        assert bench.es_standin is not None
        bench.es_standin.fault("down", OUTAGE_S)
    outage_started = time.monotonic()
    plan, ours = _write(benches["plan"]), _write(benches["ours"])

    # The plan's retries run out while Elasticsearch is still down.
    plan_rows = wait_until(
        lambda: all_finished(plan.bench.repo, plan.task_ids),
        OUTAGE_S,
        what="the plan's writes to end",
    )
    assert time.monotonic() - outage_started < OUTAGE_S
    assert {(r.status, r.failure_reason, r.retry_count) for r in plan_rows} == {
        ("failed", "max_retries_exhausted", 5)
    }
    # Ours are still waiting for it.
    assert all_finished(ours.bench.repo, ours.task_ids) is None

    # Once it is back (first probe after 30 s fails, the second after 60 more succeeds, and
    # the parked tasks come back within 1.2 x their open period), ours all land.
    our_rows = wait_until(
        lambda: all_finished(ours.bench.repo, ours.task_ids), 200, interval_s=1, what="our writes"
    )
    assert time.monotonic() - outage_started >= OUTAGE_S
    assert {r.status for r in our_rows} == {"success"}
    stored = ours.bench.items("services", ours.customer)
    assert sorted(stored) == sorted(f"w{n}" for n in range(WRITES))
    assert plan.bench.items("services", plan.customer) == {}
