"""Catalog writes survive Elasticsearch faults (stand-in only: faults are injected)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from services.core.search.catalog import KINDS
from services.core.search.versions import es_version
from tests.support.catalog import Bench, catalog_bench, new_customer
from tests.support.flow import all_finished
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow
OUTAGE_S = 60


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    # Retries wait up to 15 s, as a deployment would wait minutes: hundreds of tasks retrying
    # every few hundred milliseconds would only measure how fast two cores can spin.
    env = {
        "RETRY_BACKOFF_BASE_S": "1",
        "RETRY_BACKOFF_MAX_S": "15",
        "ELASTICSEARCH_REQUEST_TIMEOUT_S": "1",
    }
    with catalog_bench(tmp_path_factory.mktemp("faults"), worker_env=env) as started:
        yield started


def test_500_upserts_survive_a_minute_long_outage(bench: Bench) -> None:
    assert bench.es_standin is not None
    rng = random.Random(20261128)
    customer = new_customer()
    # 440 items written once and 30 written twice, the newer version sometimes sent first.
    writes: list[tuple[str, str, int]] = []
    for n in range(470):
        plural = list(KINDS)[n % 3]
        writes.append((plural, f"item-{n}", 100))
        if n < 30:
            writes.append((plural, f"item-{n}", 200 if n % 2 else 50))
    rng.shuffle(writes)
    assert len(writes) == 500

    bench.es_standin.fault("down", OUTAGE_S)
    started = time.monotonic()
    task_ids = []
    for plural, item, version in writes:
        answer = bench.api.put(
            f"/api/v1/{plural}/{item}",
            json={
                "customer_id": customer,
                "data": {"name": f"{item}@{version}"},
                "version": version,
            },
        )
        assert answer.status_code == 202
        task_ids.append(answer.json()["task_id"])
    assert not bench.es_standin.data_port_open(), "the outage ended before all writes were sent"

    rows = wait_until(
        lambda: all_finished(bench.repo, task_ids), OUTAGE_S + 120, interval_s=2, what="500 tasks"
    )
    assert time.monotonic() - started >= OUTAGE_S * 0.9
    assert {r.status for r in rows} == {"success"}
    assert max(r.retry_count for r in rows) >= 2

    latest: dict[tuple[str, str], int] = {}
    for plural, item, version in writes:
        latest[(plural, item)] = max(version, latest.get((plural, item), 0))
    applied = bench.es_standin.stats()["applied"]
    for plural in KINDS:
        stored = bench.items(plural, customer)
        expected = {item: v for (p, item), v in latest.items() if p == plural}
        # The highest caller version of each item wins, whatever order the retries landed in.
        assert {i: s["name"] for i, s in stored.items()} == {
            i: f"{i}@{v}" for i, v in expected.items()
        }
        for item in expected:
            times = applied[f"{bench.index(plural)}/{customer}:{item}"]
            sent = sum(1 for w in writes if w[:2] == (plural, item))
            assert 1 <= times <= sent, (item, times, sent)


def test_bulk_retries_only_the_items_that_failed(bench: Bench) -> None:
    assert bench.es_standin is not None
    customer = new_customer()
    # Every other item of every bulk request is refused with 429 for the whole test: resending
    # the whole bulk would never finish, resending only the refused items halves them each time.
    bench.es_standin.fault("bulk_reject", 120)
    try:
        answer = bench.api.post(
            "/api/v1/services/bulk-upsert",
            json={
                "customer_id": customer,
                "items": [{"id": f"s{n}", "data": {}} for n in range(16)],
            },
        )
        row = bench.finished(answer.json()["task_id"], timeout_s=90)
        assert bench.es_standin.current_fault() is not None
    finally:
        bench.es_standin.clear_fault()
    assert row.status == "success" and row.result is not None
    assert row.result["outcomes"] == {"created": 16}
    assert row.retry_count >= 4
    applied = bench.es_standin.stats()["applied"]
    assert all(applied[f"{bench.index('services')}/{customer}:s{n}"] == 1 for n in range(16))


def test_write_applied_but_answer_timed_out_is_retried_harmlessly(bench: Bench) -> None:
    assert bench.es_standin is not None
    customer = new_customer()
    # The stand-in applies each write, then holds the answer past the client's 1 s timeout.
    bench.es_standin.fault("timeout", 3, delay_s=2)
    answer = bench.api.put(
        "/api/v1/accessories/t1",
        json={"customer_id": customer, "data": {"name": "x"}, "version": 5},
    )
    row = bench.finished(answer.json()["task_id"], timeout_s=60)
    assert row.status == "success" and row.retry_count >= 1
    assert row.result is not None and row.result["result"] in {"superseded", "created"}
    assert bench.es_standin.stats()["applied"][f"{bench.index('accessories')}/{customer}:t1"] == 1
    stored = bench.doc("accessories", customer, "t1")
    assert stored is not None and stored["sync_version"] == es_version(row.seq)
