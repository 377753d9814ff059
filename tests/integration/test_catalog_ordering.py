"""One version domain for catalog writes: acceptance order, whatever the caller's versions.

Each test is a sequence that used to drop or resurrect an item silently: versions of
different kinds compared with each other, or an upsert in flight (waiting for its embeddings)
outliving a delete accepted after it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.catalog import Bench, catalog_bench, new_customer
from tests.support.flow import accepted, wait_processing

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    with catalog_bench(tmp_path_factory.mktemp("ordering")) as started:
        yield started


def test_a_reimport_after_a_delete_all_keeps_items_that_carry_their_updated_at(
    bench: Bench,
) -> None:
    api, customer = bench.api, new_customer()
    items = [
        {"id": f"i{n}", "data": {"name": f"item {n}", "updated_at": "2024-05-01T10:00:00Z"}}
        for n in range(5)
    ]
    body = {"customer_id": customer, "items": items}
    bench.succeeded(accepted(api.post("/api/v1/products/bulk-upsert", json=body)))
    bench.succeeded(accepted(api.delete("/api/v1/products", params={"customer_id": customer})))
    assert bench.items("products", customer) == {}
    # The same items again, from the same source, with the same updated_at: accepted after
    # the delete-all, so they stay.
    again = bench.succeeded(accepted(api.post("/api/v1/products/bulk-upsert", json=body)))
    assert again["outcomes"] == {"created": 5}
    assert set(bench.items("products", customer)) == {f"i{n}" for n in range(5)}


def test_an_unversioned_delete_between_versioned_upserts_does_not_hide_the_later_one(
    bench: Bench,
) -> None:
    api, customer = bench.api, new_customer()
    url = "/api/v1/services/s1"
    bench.succeeded(
        accepted(api.put(url, json={"customer_id": customer, "data": {"n": 7}, "version": 7}))
    )
    bench.succeeded(accepted(api.delete(url, params={"customer_id": customer})))
    last = bench.succeeded(
        accepted(api.put(url, json={"customer_id": customer, "data": {"n": 8}, "version": 8}))
    )
    assert last["result"] == "created"
    stored = bench.doc("services", customer, "s1")
    assert stored is not None and stored["n"] == 8


def test_an_older_caller_version_is_refused_when_accepted_not_when_it_runs(bench: Bench) -> None:
    api, customer = bench.api, new_customer()
    url = "/api/v1/accessories/a1"
    # The newer write fails for a while (only it: the fault matches its body) ...
    bench.es_standin.fault(  # type: ignore[union-attr]
        "error", 3.0, status=503, match={"body_contains": "from-version-8"}
    )
    newer = accepted(
        api.put(url, json={"customer_id": customer, "data": {"n": "from-version-8"}, "version": 8})
    )
    # ... while the older one, accepted after it, would land first: it is refused instead.
    older = bench.succeeded(
        accepted(api.put(url, json={"customer_id": customer, "data": {"n": "v7"}, "version": 7}))
    )
    assert older["result"] == "superseded"
    assert "newer caller version" in older["reason"]
    assert bench.succeeded(newer, timeout_s=40)["result"] == "created"
    stored = bench.doc("accessories", customer, "a1")
    assert stored is not None and stored["n"] == "from-version-8"


def test_an_upsert_waiting_for_embeddings_does_not_survive_a_later_delete_all(
    bench: Bench,
) -> None:
    api, customer = bench.api, new_customer()
    bench.embeddings.fault("slow", 6.0, delay_s=3.0)
    try:
        upsert = accepted(
            api.put(
                "/api/v1/products/p1",
                json={"customer_id": customer, "data": {"name": "lamp"}, "with_embedding": True},
            )
        )
        wait_processing(bench.repo, upsert)
        # Accepted after the upsert while it waits for its vector: the delete-all waits for
        # it (an earlier write of its customer), then removes what it wrote.
        wipe = accepted(api.delete("/api/v1/products", params={"customer_id": customer}))
        result = bench.succeeded(upsert, timeout_s=30)
        wiped = bench.succeeded(wipe, timeout_s=40)
    finally:
        bench.embeddings.clear_fault()
    assert (result["result"], wiped["deleted"]) == ("created", 1)
    assert bench.items("products", customer) == {}


def test_a_bulk_upsert_waiting_for_embeddings_does_not_survive_a_later_delete(
    bench: Bench,
) -> None:
    api, customer = bench.api, new_customer()
    bench.embeddings.fault("slow", 6.0, delay_s=3.0)
    try:
        bulk = accepted(
            api.post(
                "/api/v1/services/bulk-upsert",
                json={
                    "customer_id": customer,
                    "with_embedding": True,
                    "items": [{"id": i, "data": {"name": i}} for i in ("s1", "s2", "s3")],
                },
            )
        )
        wait_processing(bench.repo, bulk)
        bench.succeeded(
            accepted(api.delete("/api/v1/services/s2", params={"customer_id": customer})), 20
        )
        result = bench.succeeded(bulk, timeout_s=30)
    finally:
        bench.embeddings.clear_fault()
    assert result["outcomes"] == {"created": 2, "superseded": 1}
    assert set(bench.items("services", customer)) == {"s1", "s3"}


def test_writes_accepted_after_a_delete_all_are_never_removed_by_it(bench: Bench) -> None:
    api, customer = bench.api, new_customer()
    # The delete-all fails for a while; writes accepted after it land first.
    bench.es_standin.fault(  # type: ignore[union-attr]
        "error",
        2.0,
        status=503,
        match={"path_prefix": f"/{bench.index('products')}/_delete_by_query"},
    )
    wipe = accepted(api.delete("/api/v1/products", params={"customer_id": customer}))
    later = bench.succeeded(
        accepted(api.put("/api/v1/products/p9", json={"customer_id": customer, "data": {}}))
    )
    assert later["result"] == "created"
    time.sleep(2.5)
    bench.succeeded(wipe, timeout_s=30)
    assert set(bench.items("products", customer)) == {"p9"}


def test_a_delete_all_removes_writes_search_cannot_see_yet(bench: Bench) -> None:
    # The bench's stand-in refreshes only when asked (`--refresh-interval -1`): an item
    # written a moment before a delete-all is not searchable yet, so the delete-all must
    # refresh before its delete-by-query, as on a real cluster.
    api, customer = bench.api, new_customer()
    body = {"customer_id": customer, "data": {"name": "Lamp"}}
    bench.succeeded(accepted(api.put("/api/v1/products/p1", json=body)))
    bulk = {"customer_id": customer, "items": [{"id": "p2", "data": {"name": "Desk"}}]}
    bench.succeeded(accepted(api.post("/api/v1/products/bulk-upsert", json=bulk)))
    result = bench.succeeded(
        accepted(api.delete("/api/v1/products", params={"customer_id": customer}))
    )
    assert result["deleted"] == 2
    assert bench.doc("products", customer, "p1") is None
    assert bench.doc("products", customer, "p2") is None
