"""Catalog writes end to end: API or facade -> task log -> broker -> es-worker -> Elasticsearch.

Runs against the Elasticsearch stand-in, and against a real cluster too when ELASTICSEARCH_URL
is set (the fault-injection tests need the stand-in and live in test_catalog_faults.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from services.core.search import facade
from services.core.search.catalog import KINDS
from services.core.search.facade import CatalogService
from tests.support.catalog import EMBEDDINGS_KEY, Bench, catalog_bench, new_customer
from tests.support.server import running_api

pytestmark = pytest.mark.slow
REAL_ES = os.environ.get("ELASTICSEARCH_URL")


@pytest.fixture(scope="module", params=["standin", "real"])
def bench(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bench]:
    if request.param == "real" and not REAL_ES:
        pytest.skip("ELASTICSEARCH_URL is not set: set it to run these tests on a real cluster")
    with catalog_bench(
        tmp_path_factory.mktemp("catalog"),
        real_es_url=REAL_ES if request.param == "real" else None,
    ) as started:
        yield started


def test_the_worker_creates_the_indices_at_start(bench: Bench) -> None:
    for plural in KINDS:
        assert bench.es.indices.exists(index=bench.index(plural))
    mapping = bench.es.indices.get_mapping(index=bench.index("products"))
    properties = mapping[bench.index("products")]["mappings"]["properties"]
    assert properties["customer_id"]["type"] == "keyword"
    assert properties["embedding"]["dims"] == 8


def _queued(answer: Any) -> str:
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


@pytest.mark.parametrize("plural", list(KINDS))
def test_each_endpoint_changes_the_index(bench: Bench, plural: str) -> None:
    api, customer = bench.api, new_customer()
    result = bench.succeeded(
        _queued(
            api.put(f"/api/v1/{plural}/a", json={"customer_id": customer, "data": {"name": "A"}})
        )
    )
    assert result["result"] == "created"
    bench.succeeded(
        _queued(
            api.post(
                f"/api/v1/{plural}/bulk-upsert",
                json={
                    "customer_id": customer,
                    "items": [{"id": i, "data": {"name": i.upper()}} for i in ("b", "c", "d")],
                },
            )
        )
    )
    assert set(bench.items(plural, customer)) == {"a", "b", "c", "d"}
    assert bench.doc(plural, customer, "a") == bench.items(plural, customer)["a"]
    bench.succeeded(_queued(api.delete(f"/api/v1/{plural}/a", params={"customer_id": customer})))
    bench.succeeded(
        _queued(
            api.post(f"/api/v1/{plural}/bulk-delete", json={"customer_id": customer, "ids": ["b"]})
        )
    )
    assert set(bench.items(plural, customer)) == {"c", "d"}
    deleted = bench.succeeded(
        _queued(api.delete(f"/api/v1/{plural}", params={"customer_id": customer}))
    )
    assert deleted["deleted"] == 2
    assert bench.items(plural, customer) == {}


def _service(bench: Bench) -> CatalogService:
    return CatalogService(bench.settings)


@pytest.mark.parametrize("async_mode", [True, False])
@pytest.mark.parametrize("plural", list(KINDS))
def test_facade_runs_every_operation_queued_and_now(
    bench: Bench, plural: str, async_mode: bool
) -> None:
    kind, customer, service = KINDS[plural], new_customer(), _service(bench)

    async def done(answer: dict[str, Any]) -> dict[str, Any]:
        if not async_mode:
            return answer
        assert set(answer) == {"status", "task_id"} and answer["status"] == "queued"
        return bench.succeeded(answer["task_id"])

    item = {"id": "x1", "name": "Desk lamp", "description": "warm light", "price": 12.5}

    async def scenario() -> None:
        up = await done(
            await service.upsert(kind, customer, item, True, None, async_mode, None, None)
        )
        assert up["result"] == "created"
        bulk = await done(
            await service.bulk_upsert(
                kind,
                customer,
                [{"id": f"x{n}", "name": f"n{n}"} for n in (2, 3, 4)],
                False,
                None,
                async_mode,
                None,
            )
        )
        assert bulk["outcomes"] == {"created": 3}
        stored = bench.doc(plural, customer, "x1")
        assert stored is not None and len(stored["embedding"]) == 8  # with_embedding=True
        one = await done(await service.delete(kind, customer, "x1", async_mode, None, None))
        assert one["result"] == "deleted"
        many = await done(await service.bulk_delete(kind, customer, ["x2"], async_mode, None, None))
        assert many["outcomes"] == {"deleted": 1}
        assert set(bench.items(plural, customer)) == {"x3", "x4"}
        rest = await done(await service.delete_all(kind, customer, async_mode, None))
        assert rest["deleted"] == 2
        await service.aclose()

    asyncio.run(scenario())
    assert bench.items(plural, customer) == {}


def test_plan_functions_keep_their_signatures(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(bench)
    monkeypatch.setattr(facade, "_default", service)
    customer = new_customer()

    async def scenario() -> None:
        queued = await facade.upsert_product(
            customer, {"id": "p1", "name": "Chair"}, with_embedding=False
        )
        assert set(queued) == {"status", "task_id"} and queued["status"] == "queued"
        bench.succeeded(queued["task_id"])
        result = await facade.upsert_service(
            customer_id=customer,
            service_data={"id": "s1", "name": "Repair"},
            with_embedding=False,
            api_key=None,
            async_mode=False,
        )
        assert result["result"] == "created"
        gone = await facade.delete_all_services(customer, async_mode=False)
        assert gone["deleted"] == 1
        await service.aclose()

    asyncio.run(scenario())


def test_old_version_never_overwrites_newer(bench: Bench) -> None:
    api, customer = bench.api, new_customer()
    url = "/api/v1/products/p1"
    bench.succeeded(
        _queued(
            api.put(url, json={"customer_id": customer, "data": {"name": "new"}, "version": 20})
        )
    )
    old = bench.succeeded(
        _queued(
            api.put(url, json={"customer_id": customer, "data": {"name": "old"}, "version": 10})
        )
    )
    assert old["result"] == "superseded"
    stored = bench.doc("products", customer, "p1")
    assert stored is not None and stored["name"] == "new"


def test_old_upsert_after_gc_deletes_does_not_resurrect(bench: Bench) -> None:
    api, customer = bench.api, new_customer()
    put = "/api/v1/services/s1"
    bench.succeeded(
        _queued(api.put(put, json={"customer_id": customer, "data": {}, "version": 10}))
    )
    bench.succeeded(_queued(api.delete(put, params={"customer_id": customer, "version": 30})))
    time.sleep(1.5)  # past the stand-in's gc_deletes (1 s): ES itself has forgotten the delete
    late = bench.succeeded(
        _queued(api.put(put, json={"customer_id": customer, "data": {}, "version": 20}))
    )
    assert late["result"] == "superseded"
    assert bench.doc("services", customer, "s1") is None


def test_delete_all_removes_every_earlier_write_and_no_later_one(bench: Bench) -> None:
    api, customer = bench.api, new_customer()
    base = "/api/v1/accessories"
    for item, version in (("a1", 10), ("a2", 50)):
        bench.succeeded(
            _queued(
                api.put(
                    f"{base}/{item}", json={"customer_id": customer, "data": {}, "version": version}
                )
            )
        )
    removed = bench.succeeded(_queued(api.delete(base, params={"customer_id": customer})))
    assert removed["deleted"] == 2
    time.sleep(1.5)  # past the stand-in's gc_deletes: only our watermark remembers
    # Written after the delete-all: kept, whatever version the caller gives (not older
    # than the one it gave before for that item).
    later = bench.succeeded(
        _queued(api.put(f"{base}/a1", json={"customer_id": customer, "data": {}, "version": 10}))
    )
    assert later["result"] == "created"
    newer = bench.succeeded(
        _queued(api.put(f"{base}/a3", json={"customer_id": customer, "data": {}}))
    )
    assert newer["result"] == "created"
    assert set(bench.items("accessories", customer)) == {"a1", "a3"}


def test_a_delete_all_takes_no_version(bench: Bench) -> None:
    answer = bench.api.delete(
        "/api/v1/products", params={"customer_id": new_customer(), "version": 5}
    )
    assert answer.status_code == 422
    assert "takes no version" in answer.text


def test_bulk_of_50_with_two_invalid_documents(bench: Bench) -> None:
    customer = new_customer()
    items: list[dict[str, Any]] = [
        {"id": f"i{n}", "data": {"name": f"n{n}", "price": n}} for n in range(50)
    ]
    items[7]["data"]["price"] = "cheap"
    items[31]["data"]["price"] = "free"
    result = bench.succeeded(
        _queued(
            bench.api.post(
                "/api/v1/products/bulk-upsert", json={"customer_id": customer, "items": items}
            )
        )
    )
    assert result["total"] == 50 and result["outcomes"] == {"created": 48}
    failed = {f["id"]: f for f in result["failed"]}
    assert set(failed) == {f"{customer}:i7", f"{customer}:i31"}
    assert all(f["status"] == 400 and "parsing_exception" in f["reason"] for f in failed.values())
    assert len(bench.items("products", customer)) == 48


def test_mapping_error_fails_at_once_without_retries(bench: Bench) -> None:
    answer = bench.api.put(
        "/api/v1/products/bad", json={"customer_id": new_customer(), "data": {"price": "n/a"}}
    )
    row = bench.finished(_queued(answer))
    assert (row.status, row.retry_count, row.error_kind) == ("failed", 0, "permanent")
    assert row.error_message is not None and "400" in row.error_message
    # document_parsing_exception since ES 8.8, mapper_parsing_exception before.
    assert "parsing_exception" in row.error_message


def test_api_key_reaches_the_provider_and_nothing_else(bench: Bench) -> None:
    from redis import Redis

    secret = f"sk-per-call-{os.urandom(8).hex()}"
    customer = new_customer()
    task_id = _queued(
        bench.api.put(
            "/api/v1/products/k1",
            json={"customer_id": customer, "data": {"name": "Kettle"}, "with_embedding": True},
            headers={"X-Embeddings-Api-Key": secret},
        )
    )
    row = bench.finished(task_id)
    assert row.status == "success"
    assert secret in bench.embeddings.stats()["keys"]
    assert secret != EMBEDDINGS_KEY
    assert secret not in repr([row.payload, row.result, row.error_message, row.sealed_secrets])
    assert secret not in bench.worker.log()
    # The broker message itself: publish through an API whose queues no worker reads.
    parked = bench.settings.model_copy(
        update={"redis_key_prefix": f"{bench.settings.redis_key_prefix}parked:"}
    )
    with running_api(parked) as api:
        parked_id = _queued(
            api.put(
                "/api/v1/products/k2",
                json={"customer_id": customer, "data": {"name": "Pot"}, "with_embedding": True},
                headers={"X-Embeddings-Api-Key": secret},
            )
        )
    client = Redis.from_url(bench.settings.redis_url)
    try:
        messages: list[bytes] = client.lrange(f"{parked.redis_key_prefix}es", 0, -1)  # type: ignore[assignment]
    finally:
        client.close()
    [message] = [m for m in messages if parked_id.encode() in m]
    assert b"Pot" in base64.b64decode(json.loads(message)["body"])
    assert secret.encode() not in message
    assert secret.encode() not in base64.b64decode(json.loads(message)["body"])
