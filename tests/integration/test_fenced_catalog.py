"""A catalog write that may have landed stays fenced, whatever happened to its bookkeeping.

Each test makes Elasticsearch apply a write and lose its answer (the stand-in's `drop`
fault: applied, then the connection is cut), or keeps a write in flight while a delete runs,
and checks that a delete or delete-all accepted after the write still wins: the attempt that
follows (and every "superseded" exit) deletes what an earlier attempt may have written, a
delete-all waits for its customer's earlier unfinished writes and sweeps once more after the
client timeout, and caller versions start over after a delete-all.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from services.core.search.versions import es_version
from tests.support.catalog import Bench, catalog_bench, new_customer
from tests.support.flow import accepted, enqueuer, wait_processing

pytestmark = pytest.mark.slow

# The client timeout, and so how long a delete-all waits before its last sweep.
REQUEST_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    with catalog_bench(
        tmp_path_factory.mktemp("fenced"),
        worker_env={
            "ELASTICSEARCH_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S),
            "BREAKER_ENABLED": "false",
        },
    ) as started:
        yield started


def _drop_answers_of(bench: Bench, marker: str, plural: str, seconds: float = 8.0) -> None:
    """Writes whose body carries `marker` are applied, and their answers lost."""
    assert bench.es_standin is not None
    path = f"/{bench.index(plural)}/_doc" if plural != "bulk" else "/_bulk"
    bench.es_standin.fault(
        "drop", seconds, match={"method": "PUT", "path_prefix": path, "body_contains": marker}
    )


@contextmanager
def _slow_vectors(bench: Bench) -> Iterator[None]:
    """Embeddings take 3 s (an upsert with one is in flight for that long); every fault
    is cleared on the way out."""
    bench.embeddings.fault("slow", 8.0, delay_s=3.0)
    try:
        yield
    finally:
        bench.embeddings.clear_fault()
        assert bench.es_standin is not None
        bench.es_standin.clear_fault()


def _upsert_waiting_for_its_vector(bench: Bench, customer: str, marker: str) -> str:
    upsert = accepted(
        bench.api.put(
            "/api/v1/products/p1",
            json={"customer_id": customer, "data": {"name": marker}, "with_embedding": True},
        )
    )
    wait_processing(bench.repo, upsert)
    return upsert


def test_an_upsert_whose_answer_was_lost_does_not_survive_a_later_delete(bench: Bench) -> None:
    customer, marker = new_customer(), f"lost-{uuid.uuid4().hex}"
    with _slow_vectors(bench):
        upsert = _upsert_waiting_for_its_vector(bench, customer, marker)
        # Accepted after the upsert; runs first (the upsert waits for its vector). By the
        # time the upsert writes, Elasticsearch has forgotten the delete (gc_deletes 1 s).
        delete = bench.api.delete("/api/v1/products/p1", params={"customer_id": customer})
        bench.succeeded(accepted(delete), 20)
        _drop_answers_of(bench, marker, "products")
        bench.succeeded(upsert, 40)
    assert bench.items("products", customer) == {}


def test_an_upsert_in_flight_does_not_survive_a_later_delete_all(bench: Bench) -> None:
    customer, marker = new_customer(), f"wipe-{uuid.uuid4().hex}"
    with _slow_vectors(bench):
        upsert = _upsert_waiting_for_its_vector(bench, customer, marker)
        wipe = accepted(bench.api.delete("/api/v1/products", params={"customer_id": customer}))
        _drop_answers_of(bench, marker, "products")
        written = bench.finished(upsert, 40)
        wiped = bench.finished(wipe, 40)
    assert (written.status, wiped.status) == ("success", "success")
    assert bench.items("products", customer) == {}
    # The delete-all waited for the customer's earlier write (it used to run at once, find
    # nothing, and let the upsert land after it).
    assert wiped.finished_at is not None and written.finished_at is not None
    assert wiped.finished_at > written.finished_at


def test_a_bulk_whose_answer_was_lost_does_not_bring_back_an_item_deleted_later(
    bench: Bench,
) -> None:
    customer, marker = new_customer(), f"bulk-{uuid.uuid4().hex}"
    with _slow_vectors(bench):
        bulk = accepted(
            bench.api.post(
                "/api/v1/products/bulk-upsert",
                json={
                    "customer_id": customer,
                    "with_embedding": True,
                    "items": [{"id": i, "data": {"name": f"{i} {marker}"}} for i in ("a", "b")],
                },
            )
        )
        wait_processing(bench.repo, bulk)
        bench.succeeded(
            accepted(bench.api.delete("/api/v1/products/b", params={"customer_id": customer})), 20
        )
        _drop_answers_of(bench, marker, "bulk")
        bench.succeeded(bulk, 40)
    assert set(bench.items("products", customer)) == {"a"}


def test_a_delete_all_sweeps_again_after_the_client_timeout(bench: Bench) -> None:
    customer = new_customer()
    assert bench.es_standin is not None
    # A write accepted before the delete-all, sent by a writer that died after sending it
    # (the request the writer sends, sent here by hand): Elasticsearch applies it late.
    payload = {"customer_id": customer, "item_id": "late", "data": {}, "with_embedding": False}
    seq, _ = enqueuer(bench.settings).reserve("es_upsert_product", payload)
    version = es_version(seq)
    index = bench.index("products")
    bench.es_standin.fault(
        "slow", 5.0, delay_s=1.5, match={"method": "PUT", "body_contains": "late-write"}
    )
    answers: list[Any] = []

    def send() -> None:
        answers.append(
            httpx.put(
                f"{bench.es_standin.url}/{index}/_doc/{customer}:late",  # type: ignore[union-attr]
                params={"version": version, "version_type": "external", "routing": customer},
                json={
                    "customer_id": customer,
                    "item_id": "late",
                    "sync_version": version,
                    "name": "late-write",
                },
                timeout=10,
            ).status_code
        )

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wipe = bench.succeeded(
            accepted(bench.api.delete("/api/v1/products", params={"customer_id": customer})), 30
        )
    finally:
        sender.join(15)
        bench.es_standin.clear_fault()
    assert answers == [201]  # the late write did land
    assert wipe["result"] == "deleted"
    assert bench.items("products", customer) == {}


def test_a_delete_all_starts_caller_versions_over(bench: Bench) -> None:
    customer, url = new_customer(), "/api/v1/products/v1"
    bench.succeeded(
        accepted(bench.api.put(url, json={"customer_id": customer, "data": {"n": 5}, "version": 5}))
    )
    bench.succeeded(
        accepted(bench.api.delete("/api/v1/products", params={"customer_id": customer}))
    )
    # The item is re-created with its version restarted: accepted after the delete-all, it
    # is a new item, not an old write of the one the delete-all removed.
    again = bench.succeeded(
        accepted(bench.api.put(url, json={"customer_id": customer, "data": {"n": 1}, "version": 1}))
    )
    assert again["result"] == "created"
    stored = bench.doc("products", customer, "v1")
    assert stored is not None and stored["n"] == 1
