"""Catalog endpoints refuse bad input with a clear 422 and queue nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.core.config import Settings
from services.core.db import get_engine
from services.core.tasklog.repository import TaskLogRepository
from tests.support.server import parked, running_api


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    from services.core.config import get_settings

    settings = parked(get_settings(), "catalog-validation")
    with running_api(settings.model_copy(update={"bulk_max_items": 5})) as client:
        yield client


def _rows(settings: Settings) -> int:
    with get_engine(settings.database_url).connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM task_log")).scalar_one())


BAD: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("PUT", "/api/v1/gadgets/p1", {"customer_id": "c1", "data": {}}, "kind"),
    ("PUT", "/api/v1/products/p1", {"data": {"name": "x"}}, "customer_id"),
    ("PUT", "/api/v1/products/p1", {"customer_id": "c1", "data": "nope"}, "data"),
    ("PUT", "/api/v1/products/p1", {"customer_id": "c:1", "data": {}}, "customer_id"),
    ("PUT", "/api/v1/products/p1", {"customer_id": "c1", "data": {}, "version": -1}, "version"),
    ("PUT", "/api/v1/products/p1", {"customer_id": "c1", "data": {"id": "p2"}}, "id"),
    ("PUT", "/api/v1/products/p1", {"customer_id": "c1", "data": {}, "colour": 1}, "colour"),
    ("POST", "/api/v1/services/bulk-upsert", {"customer_id": "c1", "items": []}, "items"),
    ("POST", "/api/v1/services/bulk-upsert", {"customer_id": "c1", "items": [{"data": {}}]}, "id"),
    (
        "POST",
        "/api/v1/services/bulk-upsert",
        {"customer_id": "c1", "items": [{"id": i, "data": {}} for i in range(6)]},
        "at most 5",
    ),
    (
        "POST",
        "/api/v1/services/bulk-upsert",
        {"customer_id": "c1", "items": [{"id": 1, "data": {}}, {"id": "1", "data": {}}]},
        "more than once",
    ),
    ("POST", "/api/v1/accessories/bulk-delete", {"customer_id": "c1", "ids": []}, "ids"),
    (
        "POST",
        "/api/v1/accessories/bulk-delete",
        {"customer_id": "c1", "ids": list(range(6))},
        "at most 5",
    ),
    ("DELETE", "/api/v1/accessories", None, "customer_id"),
    ("DELETE", "/api/v1/accessories/a1?customer_id=c1&version=x", None, "version"),
    # Secret-looking field names: refused by name, never stored (it was a 500).
    (
        "PUT",
        "/api/v1/products/p1",
        {"customer_id": "c1", "data": {"name": "Lamp", "password_hint": "pet's name"}},
        '"loc":["body","data","password_hint"]',
    ),
    (
        "PUT",
        "/api/v1/products/p1",
        {"customer_id": "c1", "data": {"specs": {"tokens": ["a", "b"]}}},
        '"loc":["body","data","specs","tokens"]',
    ),
    (
        "POST",
        "/api/v1/services/bulk-upsert",
        {
            "customer_id": "c1",
            "items": [{"id": 1, "data": {}}, {"id": 2, "data": {"api_key": "k"}}],
        },
        '"loc":["body","items",1,"data","api_key"]',
    ),
]


@pytest.mark.parametrize(("method", "url", "body", "mentions"), BAD)
def test_bad_catalog_requests_are_422_and_queue_nothing(
    api: httpx.Client,
    settings: Settings,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    mentions: str,
) -> None:
    before = _rows(settings)
    answer = api.request(method, url, json=body)
    assert answer.status_code == 422, answer.text
    assert mentions in answer.text
    assert _rows(settings) == before


def test_secret_looking_names_that_hold_no_secret_are_data(
    api: httpx.Client, pg_repo: TaskLogRepository
) -> None:
    # A count or a flag under such a name is not a credential (the enqueue check agrees).
    data = {"name": "Lamp", "tokens": 3, "password_protected": False, "api_key_count": 0}
    answer = api.put("/api/v1/products/p-2", json={"customer_id": "c1", "data": data})
    assert answer.status_code == 202, answer.text
    row = pg_repo.get_by_task_id(answer.json()["task_id"])
    assert row is not None and row.payload["data"] == data


def test_accepted_upsert_answers_202_with_status_url_and_a_versioned_row(
    api: httpx.Client, pg_repo: TaskLogRepository
) -> None:
    answer = api.put(
        "/api/v1/products/p-1",
        json={"customer_id": "c1", "data": {"name": "Lamp"}, "version": 3},
        headers={"X-Embeddings-Api-Key": "sk-should-not-be-stored-123"},
    )
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "queued"
    assert body["status_url"] == f"/api/v1/tasks/{body['task_id']}/status"
    row = pg_repo.get_by_task_id(body["task_id"])
    assert row is not None and row.task_name == "es_upsert_product" and row.queue == "es"
    assert row.payload == {
        "customer_id": "c1",
        "item_id": "p-1",
        "data": {"name": "Lamp"},
        "with_embedding": False,
        "caller_version": 3,
        "caller_version_source": "version",
    }
    assert row.seq > 0
    assert row.customer_id == "c1"
    assert "sk-should-not-be-stored" not in repr(row.payload) + (row.sealed_secrets or "")
    assert row.sealed_secrets is not None


# Field names Elasticsearch would refuse for the document our payload builder makes (item data
# is spread into it next to our own fields): refused here, by name, before anything is queued,
# instead of a task that fails after the 202.
BAD_FIELD_NAMES: list[tuple[str, dict[str, Any], list[str | int]]] = [
    ("/api/v1/products/p1", {"": 1}, ["body", "data", ""]),
    ("/api/v1/products/p1", {"specs": {"": 1}}, ["body", "data", "specs", ""]),
    ("/api/v1/products/p1", {"   ": 1}, ["body", "data", "   "]),
    ("/api/v1/products/p1", {"a..b": 1}, ["body", "data", "a..b"]),
    ("/api/v1/products/p1", {".a": 1}, ["body", "data", ".a"]),
    ("/api/v1/products/p1", {"a.": 1}, ["body", "data", "a."]),
    ("/api/v1/products/p1", {"...": 1}, ["body", "data", "..."]),
    ("/api/v1/products/p1", {"a": 1, "a.b": 2}, ["body", "data", "a.b"]),
    ("/api/v1/products/p1", {"a.b": 2, "a": 1}, ["body", "data", "a"]),
    ("/api/v1/products/p1", {"a": {"b": 1}, "a.b": {"c": 2}}, ["body", "data", "a.b"]),
    ("/api/v1/products/p1", {"a": {"b": {"c": 1}}, "a.b": 2}, ["body", "data", "a.b"]),
    ("/api/v1/products/p1", {"a": [1, {"b": 2}]}, ["body", "data", "a", 1]),
    ("/api/v1/products/p1", {"name": {"first": "Desk"}}, ["body", "data", "name"]),
    ("/api/v1/products/p1", {"price.amount": 3}, ["body", "data", "price.amount"]),
    ("/api/v1/products/p1", {"_id": "other"}, ["body", "data", "_id"]),
    ("/api/v1/products/p1", {"_source": {"x": 1}}, ["body", "data", "_source"]),
    ("/api/v1/products/p1", {"_routing": "c2"}, ["body", "data", "_routing"]),
    ("/api/v1/products/p1", {"customer_id": "c2"}, ["body", "data", "customer_id"]),
    ("/api/v1/products/p1", {"item_id": "p2"}, ["body", "data", "item_id"]),
    ("/api/v1/products/p1", {"sync_version": 1}, ["body", "data", "sync_version"]),
    ("/api/v1/products/p1", {"synced_at": "2024-01-01"}, ["body", "data", "synced_at"]),
    ("/api/v1/products/p1", {"embedding": [0.1, 0.2]}, ["body", "data", "embedding"]),
    ("/api/v1/products/p1", {"customer_id.x": 1}, ["body", "data", "customer_id.x"]),
]


@pytest.mark.parametrize(("url", "data", "loc"), BAD_FIELD_NAMES)
def test_field_names_elasticsearch_would_refuse_are_422_naming_the_field(
    api: httpx.Client, settings: Settings, url: str, data: dict[str, Any], loc: list[str | int]
) -> None:
    before = _rows(settings)
    answer = api.put(url, json={"customer_id": "c1", "data": data})
    assert answer.status_code == 422, answer.text
    assert loc in [error["loc"] for error in answer.json()["detail"]], answer.text
    assert _rows(settings) == before


def test_bad_field_names_in_a_bulk_item_are_422_naming_the_item(
    api: httpx.Client, settings: Settings
) -> None:
    before = _rows(settings)
    items = [{"id": 1, "data": {"name": "ok"}}, {"id": 2, "data": {"": 1, "b": 1, "b.c": 2}}]
    answer = api.post("/api/v1/services/bulk-upsert", json={"customer_id": "c1", "items": items})
    assert answer.status_code == 422, answer.text
    locs = [error["loc"] for error in answer.json()["detail"]]
    assert ["body", "items", 1, "data", ""] in locs
    assert ["body", "items", 1, "data", "b.c"] in locs
    assert _rows(settings) == before


def test_field_names_elasticsearch_accepts_are_data(
    api: httpx.Client, pg_repo: TaskLogRepository
) -> None:
    # Dotted names that only add to an object path, and underscores below the top level.
    data = {"specs": {"size": 1}, "specs.colour": "red", "dims": {"_w": 2}, "tags": ["a", "b"]}
    answer = api.put("/api/v1/products/p-3", json={"customer_id": "c1", "data": data})
    assert answer.status_code == 202, answer.text
    row = pg_repo.get_by_task_id(answer.json()["task_id"])
    assert row is not None and row.payload["data"] == data
