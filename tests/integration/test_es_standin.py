"""The Elasticsearch stand-in, driven by the official `elasticsearch` client over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import elasticsearch
import httpx
import pytest
from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    BadRequestError,
    ConflictError,
    Elasticsearch,
    NotFoundError,
)

from tests.support.procs import wait_until
from tests.support.standins import Standin

MAPPINGS = {
    "dynamic": "strict",
    "properties": {
        "customer_id": {"type": "keyword"},
        "price": {"type": "float"},
        "quantity": {"type": "integer"},
        "paid": {"type": "boolean"},
        "created_at": {"type": "date"},
        "embedding": {"type": "dense_vector", "dims": 3},
        "address": {"properties": {"city": {"type": "keyword"}, "zip": {"type": "long"}}},
    },
}


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    server = Standin("elasticsearch", tmp_path_factory.mktemp("es-standin")).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean(standin: Standin) -> None:
    standin.clear_fault()
    standin.reset()


def client_for(standin: Standin, **options: Any) -> Elasticsearch:
    # No retries: each test sees exactly what one request got.
    options = {"max_retries": 0, "retry_on_status": (), "request_timeout": 5, **options}
    return Elasticsearch(standin.url, **options)


@pytest.fixture
def es(standin: Standin) -> Iterator[Elasticsearch]:
    client = client_for(standin)
    yield client
    client.close()


@pytest.fixture
def orders(es: Elasticsearch) -> str:
    es.indices.create(index="orders", mappings=MAPPINGS, settings={"number_of_replicas": 0})
    return "orders"


def test_index_is_created_with_mappings_and_settings(es: Elasticsearch, orders: str) -> None:
    assert es.info()["version"]["number"].startswith("8.")
    assert es.indices.exists(index=orders)
    assert not es.indices.exists(index="missing")
    assert es.indices.get_mapping(index=orders)[orders]["mappings"] == MAPPINGS
    settings = es.indices.get(index=orders)[orders]["settings"]["index"]
    assert settings["number_of_replicas"] == "0"

    with pytest.raises(BadRequestError) as again:
        es.indices.create(index=orders)
    assert again.value.error == "resource_already_exists_exception"

    es.indices.put_mapping(index=orders, properties={"note": {"type": "text"}})
    properties = es.indices.get_mapping(index=orders)[orders]["mappings"]["properties"]
    assert properties["note"] == {"type": "text"}
    assert properties["price"] == {"type": "float"}
    with pytest.raises(BadRequestError, match="illegal_argument_exception"):
        es.indices.put_mapping(index=orders, properties={"price": {"type": "keyword"}})

    assert es.indices.delete(index=orders)["acknowledged"]
    assert not es.indices.exists(index=orders)


def test_reads_of_a_missing_index_are_404_but_writes_create_it(es: Elasticsearch) -> None:
    with pytest.raises(NotFoundError) as missing:
        es.get(index="fresh", id="1")
    assert missing.value.error == "index_not_found_exception"

    assert es.index(index="fresh", id="1", document={"n": 1, "name": "a"})["result"] == "created"
    mapping = es.indices.get_mapping(index="fresh")["fresh"]["mappings"]["properties"]
    assert mapping["n"] == {"type": "long"}  # mapped dynamically, as ES does
    with pytest.raises(BadRequestError, match="document_parsing_exception"):
        es.index(index="fresh", id="2", document={"n": "not a number"})


def test_external_version_newer_wins_and_older_conflicts(es: Elasticsearch, orders: str) -> None:
    first = es.index(
        index=orders, id="a", document={"price": 1}, version=5, version_type="external"
    )
    assert (first["result"], first["_version"], first["_seq_no"]) == ("created", 5, 0)
    newer = es.index(
        index=orders, id="a", document={"price": 2}, version=7, version_type="external"
    )
    assert (newer["result"], newer["_version"]) == ("updated", 7)

    for stale in (7, 6):
        with pytest.raises(ConflictError) as conflict:
            es.index(
                index=orders, id="a", document={"price": 9}, version=stale, version_type="external"
            )
        assert conflict.value.body["error"]["reason"] == (
            f"[a]: version conflict, current version [7] is higher or equal to the one provided "
            f"[{stale}]"
        )
    same = es.index(
        index=orders, id="a", document={"price": 3}, version=7, version_type="external_gte"
    )
    assert same["_version"] == 7
    doc = es.get(index=orders, id="a")
    assert (doc["_version"], doc["_source"]) == (7, {"price": 3})
    assert es.get(index=orders, id="a", version=7, version_type="external")["found"]
    with pytest.raises(ConflictError, match="version_conflict_engine_exception"):
        es.get(index=orders, id="a", version=6, version_type="external")


def test_internal_versioning_counts_up_and_refuses_a_version(
    es: Elasticsearch, orders: str
) -> None:
    assert es.index(index=orders, id="i", document={"price": 1})["_version"] == 1
    assert es.index(index=orders, id="i", document={"price": 2})["_version"] == 2
    with pytest.raises(BadRequestError, match="action_request_validation_exception"):
        es.index(index=orders, id="i", document={"price": 3}, version=9)
    with pytest.raises(ConflictError, match="version_conflict_engine_exception"):
        es.create(index=orders, id="i", document={"price": 3})


def test_delete_tombstone_blocks_an_older_write(es: Elasticsearch, orders: str) -> None:
    es.index(index=orders, id="d", document={"price": 1}, version=5, version_type="external")
    deleted = es.delete(index=orders, id="d", version=6, version_type="external")
    assert (deleted["result"], deleted["_version"]) == ("deleted", 6)

    with pytest.raises(ConflictError, match="version_conflict_engine_exception"):
        es.index(index=orders, id="d", document={"price": 2}, version=6, version_type="external")
    revived = es.index(
        index=orders, id="d", document={"price": 2}, version=8, version_type="external"
    )
    assert (revived["result"], revived["_version"]) == ("created", 8)

    # Deleting a doc that never existed still leaves a tombstone, as ES does.
    with pytest.raises(NotFoundError) as missing:
        es.delete(index=orders, id="never", version=10, version_type="external")
    assert missing.value.body["result"] == "not_found"
    with pytest.raises(ConflictError):
        es.index(index=orders, id="never", document={}, version=9, version_type="external")


def test_tombstone_is_forgotten_after_gc_deletes(tmp_path_factory: pytest.TempPathFactory) -> None:
    standin = Standin(
        "elasticsearch", tmp_path_factory.mktemp("es-gc"), "--gc-deletes-s", "1"
    ).start()
    try:
        with client_for(standin) as es:
            es.index(index="gc", id="x", document={"n": 1}, version=5, version_type="external")
            es.delete(index="gc", id="x", version=6, version_type="external")
            deleted_at = time.monotonic()
            with pytest.raises(ConflictError):
                es.index(index="gc", id="x", document={"n": 2}, version=3, version_type="external")

            def older_write_accepted() -> bool:
                try:
                    es.index(
                        index="gc", id="x", document={"n": 3}, version=3, version_type="external"
                    )
                except ConflictError:
                    return False
                return True

            wait_until(older_write_accepted, 5, interval_s=0.1, what="the tombstone to expire")
            assert time.monotonic() - deleted_at >= 1.0
            doc = es.get(index="gc", id="x")
            assert (doc["_version"], doc["_source"]) == (3, {"n": 3})
    finally:
        standin.stop()


@pytest.mark.parametrize(
    ("document", "error_type", "reason"),
    [
        (
            {"price": "abc"},
            "document_parsing_exception",
            "failed to parse field [price] of type [float] in document with id 'bad'",
        ),
        ({"quantity": 3_000_000_000}, "document_parsing_exception", "of type [integer]"),
        ({"paid": "yes"}, "document_parsing_exception", "of type [boolean]"),
        ({"created_at": "yesterday"}, "document_parsing_exception", "of type [date]"),
        ({"customer_id": {"a": 1}}, "document_parsing_exception", "of type [keyword]"),
        ({"address": {"zip": "x1"}}, "document_parsing_exception", "field [address.zip]"),
        ({"embedding": [1, 2]}, "document_parsing_exception", "different number of dimensions"),
        ({"unknown": 1}, "strict_dynamic_mapping_exception", "dynamic introduction of [unknown]"),
    ],
)
def test_mapping_violations_are_bad_requests(
    es: Elasticsearch,
    orders: str,
    standin: Standin,
    document: dict[str, Any],
    error_type: str,
    reason: str,
) -> None:
    with pytest.raises(BadRequestError) as refused:
        es.index(index=orders, id="bad", document=document)
    assert refused.value.error == error_type
    assert reason in refused.value.body["error"]["reason"]
    assert not es.exists(index=orders, id="bad")
    assert "orders/bad" not in standin.stats()["applied"]


def test_valid_values_pass_mapping_checks(es: Elasticsearch, orders: str) -> None:
    document = {
        "customer_id": ["c1", "c2"],
        "price": "12.5",
        "quantity": 3,
        "paid": "false",
        "created_at": "2024-05-01T10:00:00Z",
        "embedding": [0.1, 0.2, 0.3],
        "address": {"city": "Lyon", "zip": 69001},
    }
    assert es.index(index=orders, id="ok", document=document)["result"] == "created"
    assert es.index(index=orders, id="ms", document={"created_at": 1714557600000})["_version"] == 1


def test_bulk_reports_two_invalid_docs_among_fifty(es: Elasticsearch, orders: str) -> None:
    operations: list[dict[str, Any]] = []
    for n in range(50):
        price: Any = "not-a-price" if n in (7, 31) else n
        operations += [{"index": {"_index": orders, "_id": str(n)}}, {"price": price}]

    response = es.bulk(operations=operations, refresh=True)

    assert response["errors"] is True
    assert isinstance(response["took"], int)
    items = [item["index"] for item in response["items"]]
    failed = [item for item in items if "error" in item]
    assert [item["_id"] for item in failed] == ["7", "31"]
    assert {item["status"] for item in failed} == {400}
    assert {item["error"]["type"] for item in failed} == {"document_parsing_exception"}
    assert [item["status"] for item in items if "error" not in item] == [201] * 48
    assert es.count(index=orders)["count"] == 48


def test_bulk_delete_of_a_missing_doc_is_not_an_error(es: Elasticsearch, orders: str) -> None:
    response = es.bulk(
        index=orders,
        operations=[{"create": {"_id": "1"}}, {"price": 1}, {"delete": {"_id": "nope"}}],
    )
    assert response["errors"] is False
    assert response["items"][1]["delete"]["status"] == 404
    assert response["items"][1]["delete"]["result"] == "not_found"


def test_delete_by_query_with_term_and_range(es: Elasticsearch, orders: str) -> None:
    for n in range(10):
        es.index(index=orders, id=str(n), document={"customer_id": f"c{n % 2}", "price": n})
    es.index(index=orders, id="3", document={"customer_id": "c1", "price": 3})  # version 2
    es.indices.refresh(index=orders)  # delete-by-query deletes what search sees

    query = {
        "bool": {
            "filter": [{"term": {"customer_id": "c1"}}, {"range": {"price": {"gte": 3, "lt": 9}}}]
        }
    }
    result = es.delete_by_query(index=orders, query=query, refresh=True)

    assert (result["deleted"], result["total"], result["failures"]) == (3, 3, [])
    remaining = es.search(index=orders, query={"match_all": {}}, size=20)["hits"]["hits"]
    assert sorted(int(hit["_id"]) for hit in remaining) == [0, 1, 2, 4, 6, 8, 9]
    # ES deletes with internal versioning, so the tombstone of doc 3 (version 2) holds 3.
    with pytest.raises(ConflictError, match="current version \\[3\\]"):
        es.index(index=orders, id="3", document={}, version=3, version_type="external")


def test_search_by_customer_id_pages_in_id_order(es: Elasticsearch, orders: str) -> None:
    for n in range(12):
        customer = "c7" if n % 3 == 0 else "other"
        es.index(index=orders, id=f"{n:02d}", document={"customer_id": customer}, routing="r1")
    es.indices.refresh(index=orders)

    first = es.search(index=orders, query={"term": {"customer_id": "c7"}}, size=3)
    assert first["hits"]["total"] == {"value": 4, "relation": "eq"}
    assert [hit["_id"] for hit in first["hits"]["hits"]] == ["00", "03", "06"]
    hit = first["hits"]["hits"][0]
    assert (hit["_index"], hit["_routing"], hit["_source"]) == (orders, "r1", {"customer_id": "c7"})
    second = es.search(
        index=orders, query={"term": {"customer_id": {"value": "c7"}}}, size=3, from_=3
    )
    assert [hit["_id"] for hit in second["hits"]["hits"]] == ["09"]

    es.index(index="orders-archive", id="z", document={"customer_id": "c7"}, refresh=True)
    both = es.search(index="orders*", query={"terms": {"customer_id": ["c7"]}})
    assert both["hits"]["total"]["value"] == 5
    listed = es.search(index=f"{orders},orders-archive", query={"ids": {"values": ["z", "00"]}})
    assert [hit["_id"] for hit in listed["hits"]["hits"]] == ["00", "z"]
    with pytest.raises(BadRequestError, match="parsing_exception"):
        es.search(index=orders, query={"no_such_query": {}})


def test_cat_indices_lists_health_and_doc_counts(es: Elasticsearch, orders: str) -> None:
    es.index(index=orders, id="1", document={"price": 1}, refresh=True)
    es.index(index="logs", id="1", document={"m": "x"})
    listed = es.cat.indices(format="json").body
    assert isinstance(listed, list)
    rows = {row["index"]: row for row in listed}
    assert set(rows) == {orders, "logs"}
    row = rows[orders]
    assert (row["health"], row["docs.count"], row["rep"]) == ("green", "1", "0")
    assert rows["logs"]["health"] == "yellow"  # one node: a replica is never assigned
    assert rows["logs"]["status"] == "open"
    assert es.cluster.health()["status"] == "yellow"


def test_down_refuses_connections_then_recovers(es: Elasticsearch, standin: Standin) -> None:
    es.index(index="d", id="1", document={"n": 1})
    standin.fault("down", 1.0)
    with pytest.raises(elasticsearch.ConnectionError):
        es.get(index="d", id="1")
    assert not standin.data_port_open()
    wait_until(standin.data_port_open, 5, interval_s=0.05, what="the data port to reopen")
    assert standin.current_fault() is None
    assert es.get(index="d", id="1")["_source"] == {"n": 1}  # data survives an outage

    standin.fault("down", 60)
    assert not standin.data_port_open()
    standin.clear_fault()
    assert standin.data_port_open()


def test_error_fault_answers_503_in_es_shape(es: Elasticsearch, standin: Standin) -> None:
    standin.fault("error", 5, status=503)
    with pytest.raises(ApiError) as failed:
        es.index(index="e", id="1", document={"n": 1})
    assert failed.value.meta.status == 503
    assert failed.value.meta.headers["X-Elastic-Product"] == "Elasticsearch"
    assert failed.value.body["status"] == 503
    assert failed.value.body["error"]["root_cause"][0]["type"] == "cluster_block_exception"
    standin.clear_fault()
    assert standin.stats()["applied"] == {}


def test_error_fault_429_carries_retry_after(es: Elasticsearch, standin: Standin) -> None:
    standin.fault("error", 5, status=429, retry_after_s=2)
    with pytest.raises(ApiError) as failed:
        es.index(index="e", id="1", document={"n": 1})
    assert failed.value.meta.status == 429
    assert failed.value.meta.headers["Retry-After"] == "2"
    assert failed.value.body["error"]["type"] == "es_rejected_execution_exception"


def test_slow_fault_delays_then_answers(es: Elasticsearch, standin: Standin) -> None:
    standin.fault("slow", 5, delay_s=0.4)
    started = time.monotonic()
    assert es.index(index="s", id="1", document={"n": 1})["result"] == "created"
    assert time.monotonic() - started >= 0.4


def test_timeout_fault_applies_the_write_but_the_caller_times_out(
    es: Elasticsearch, standin: Standin
) -> None:
    standin.fault("timeout", 5, delay_s=2)
    with pytest.raises(elasticsearch.ConnectionTimeout):
        es.options(request_timeout=0.3).index(index="t", id="1", document={"n": 1})
    standin.clear_fault()
    assert es.get(index="t", id="1")["_source"] == {"n": 1}
    assert standin.stats()["applied"] == {"t/1": 1}


def test_drop_fault_applies_the_write_and_cuts_the_connection(
    es: Elasticsearch, standin: Standin
) -> None:
    standin.fault("drop", 5, match={"path_prefix": "/d/_doc"})
    with pytest.raises(elasticsearch.ConnectionError):
        es.index(index="d", id="1", document={"n": 1})
    standin.clear_fault()
    assert es.get(index="d", id="1")["_source"] == {"n": 1}
    assert standin.stats()["applied"] == {"d/1": 1}


def test_bulk_reject_fails_odd_items_without_applying_them(
    es: Elasticsearch, standin: Standin, orders: str
) -> None:
    standin.fault("bulk_reject", 5)
    operations: list[dict[str, Any]] = []
    for n in range(6):
        operations += [{"index": {"_index": orders, "_id": str(n)}}, {"price": n}]
    response = es.bulk(operations=operations, refresh=True)
    standin.clear_fault()

    assert response["errors"] is True
    statuses = [item["index"]["status"] for item in response["items"]]
    assert statuses == [201, 429, 201, 429, 201, 429]
    rejected = response["items"][1]["index"]["error"]
    assert rejected["type"] == "es_rejected_execution_exception"
    assert es.count(index=orders)["count"] == 3
    assert standin.stats()["applied"] == {"orders/0": 1, "orders/2": 1, "orders/4": 1}


def test_stats_count_only_applied_writes(es: Elasticsearch, standin: Standin) -> None:
    es.index(index="s", id="1", document={"n": 1}, version=1, version_type="external")
    with pytest.raises(ConflictError):
        es.index(index="s", id="1", document={"n": 1}, version=1, version_type="external")
    es.index(index="s", id="1", document={"n": 2}, version=2, version_type="external")
    es.delete(index="s", id="1", version=3, version_type="external")
    stats = standin.stats()
    assert stats["applied"] == {"s/1": 3}
    assert stats["requests"] == 4


def test_control_api_refuses_bad_faults_and_expires_them(standin: Standin) -> None:
    bad_faults: list[dict[str, Any]] = [
        {"mode": "explode", "duration_s": 1},
        {"mode": "error"},
        {"mode": "error", "duration_s": -1},
        {"mode": "slow", "duration_s": 1},
        {"mode": "down", "duration_s": 1, "status": 503},
        {"mode": "error", "duration_s": 1, "status": 200},
        {"mode": "error", "duration_s": 1, "colour": "red"},
    ]
    with httpx.Client(base_url=standin.control_url) as control:
        for body in bad_faults:
            response = control.post("/faults", json=body)
            assert response.status_code == 422, body
            assert response.json()["error"]
        assert control.get("/faults").json() is None

    standin.fault("slow", 0.5, delay_s=0.01)
    assert standin.current_fault() is not None
    wait_until(lambda: standin.current_fault() is None, 3, interval_s=0.05, what="expiry")


def test_async_client_talks_to_the_standin(standin: Standin) -> None:
    async def scenario() -> dict[str, Any]:
        client = AsyncElasticsearch(standin.url, max_retries=0)
        try:
            await client.indices.create(
                index="async", mappings={"properties": {"n": {"type": "long"}}}
            )
            await client.index(index="async", id="1", document={"n": 5}, refresh=True)
            found = await client.search(index="async", query={"range": {"n": {"gt": 4}}})
            return dict(found["hits"])
        finally:
            await client.close()

    hits = asyncio.run(scenario())
    assert [hit["_id"] for hit in hits["hits"]] == ["1"]
