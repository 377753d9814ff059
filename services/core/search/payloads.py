"""Task payloads of catalog writes, and the one dispatcher that executes them.

The API, the facade and the worker all go through here: the API and the facade build a
payload (resolving each write's version at acceptance), the worker or `async_mode=False`
executes it.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any

from services.core.search.catalog import Kind, Operation
from services.core.search.versions import write_version
from services.core.search.writer import BulkProgress, CatalogWriter, Item

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ITEM_ID_PATTERN = r"^[^/\s\x00-\x1f][^/\x00-\x1f]{0,255}$"
_CUSTOMER_RE = re.compile(CUSTOMER_ID_PATTERN)
_ITEM_RE = re.compile(ITEM_ID_PATTERN)


def check_customer_id(value: str) -> str:
    """A valid customer id, or ValueError saying what is wrong."""
    if not _CUSTOMER_RE.match(value):
        raise ValueError(f"customer_id {value!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return value


def check_item_id(value: Any) -> str:
    """A valid item id (numbers are accepted and kept as text), or ValueError."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else None
    if text is None or not _ITEM_RE.match(text):
        raise ValueError(
            f"item id {value!r} must be 1-256 characters without '/', white space at the start, "
            "or control characters"
        )
    return text


def _unique(ids: list[str]) -> list[str]:
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    if twice:
        raise ValueError(f"ids appear more than once: {twice[:10]}")
    return ids


def upsert(
    customer_id: str,
    item_id: Any,
    data: dict[str, Any],
    *,
    with_embedding: bool,
    version: int | None,
    accepted_at: datetime,
) -> dict[str, Any]:
    """Payload of a single upsert."""
    return {
        "customer_id": check_customer_id(customer_id),
        "item_id": check_item_id(item_id),
        "data": data,
        "with_embedding": with_embedding,
        "version": write_version(version, data, accepted_at),
    }


def delete(
    customer_id: str, item_id: Any, *, version: int | None, accepted_at: datetime
) -> dict[str, Any]:
    """Payload of a single delete."""
    return {
        "customer_id": check_customer_id(customer_id),
        "item_id": check_item_id(item_id),
        "version": write_version(version, None, accepted_at),
    }


def bulk_upsert(
    customer_id: str,
    items: list[dict[str, Any]],
    *,
    with_embedding: bool,
    accepted_at: datetime,
) -> dict[str, Any]:
    """Payload of a bulk upsert; items are {"id", "data", "version"?}."""
    if not items:
        raise ValueError("items must not be empty")
    resolved: list[dict[str, Any]] = [
        {
            "id": check_item_id(i.get("id")),
            "data": i.get("data") or {},
            "version": write_version(i.get("version"), i.get("data"), accepted_at),
        }
        for i in items
    ]
    _unique([str(i["id"]) for i in resolved])
    return {
        "customer_id": check_customer_id(customer_id),
        "items": resolved,
        "with_embedding": with_embedding,
    }


def bulk_delete(
    customer_id: str, ids: list[Any], *, version: int | None, accepted_at: datetime
) -> dict[str, Any]:
    """Payload of a bulk delete."""
    if not ids:
        raise ValueError("ids must not be empty")
    return {
        "customer_id": check_customer_id(customer_id),
        "ids": _unique([check_item_id(i) for i in ids]),
        "version": write_version(version, None, accepted_at),
    }


def delete_all(customer_id: str, *, version: int | None, accepted_at: datetime) -> dict[str, Any]:
    """Payload of deleting all items of a customer."""
    return {
        "customer_id": check_customer_id(customer_id),
        "version": write_version(version, None, accepted_at),
    }


async def execute(
    writer: CatalogWriter,
    kind: Kind,
    op: Operation,
    payload: dict[str, Any],
    *,
    api_key: str | None = None,
    progress: BulkProgress | None = None,
) -> dict[str, Any]:
    """Carry out a catalog payload against Elasticsearch."""
    customer = payload["customer_id"]
    progress = progress or BulkProgress()
    if op is Operation.UPSERT:
        item = Item(payload["item_id"], payload["data"], payload["version"])
        return await writer.upsert(
            kind, customer, item, with_embedding=payload["with_embedding"], api_key=api_key
        )
    if op is Operation.DELETE:
        return await writer.delete(kind, customer, payload["item_id"], payload["version"])
    if op is Operation.BULK_UPSERT:
        items = [Item(i["id"], i["data"], i["version"]) for i in payload["items"]]
        return await writer.bulk_upsert(
            kind,
            customer,
            items,
            progress,
            with_embedding=payload["with_embedding"],
            api_key=api_key,
        )
    if op is Operation.BULK_DELETE:
        return await writer.bulk_delete(
            kind, customer, payload["ids"], payload["version"], progress
        )
    return await writer.delete_all(kind, customer, payload["version"])
