"""Task payloads of catalog writes: built by the API and the facade, never executed here.

The API and the facade build a payload (with the caller's version, if any, which is checked
when the task is accepted); the worker or `async_mode=False` executes it with
services/core/search/apply.py. This module imports nothing that talks to Elasticsearch.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from services.core.ids import CUSTOMER_ID_PATTERN

# Importing the payload builders also registers the caller-version check run at acceptance.
from services.core.search import caller_versions  # noqa: F401
from services.core.search.fieldnames import check_field_names
from services.core.search.versions import caller_version

__all__ = [
    "CUSTOMER_ID_PATTERN",
    "ITEM_ID_PATTERN",
    "bulk_delete",
    "bulk_upsert",
    "check_customer_id",
    "check_item_id",
    "delete",
    "delete_all",
    "upsert",
]

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


def _named(data: dict[str, Any]) -> dict[str, Any]:
    check_field_names(data)
    return data


def _versioned(version: int | None, data: dict[str, Any] | None) -> dict[str, Any]:
    found = caller_version(version, data)
    return found.as_payload() if found is not None else {}


def upsert(
    customer_id: str,
    item_id: Any,
    data: dict[str, Any],
    *,
    with_embedding: bool,
    version: int | None,
) -> dict[str, Any]:
    """Payload of a single upsert."""
    return {
        "customer_id": check_customer_id(customer_id),
        "item_id": check_item_id(item_id),
        "data": _named(data),
        "with_embedding": with_embedding,
        **_versioned(version, data),
    }


def delete(customer_id: str, item_id: Any, *, version: int | None) -> dict[str, Any]:
    """Payload of a single delete."""
    return {
        "customer_id": check_customer_id(customer_id),
        "item_id": check_item_id(item_id),
        **_versioned(version, None),
    }


def bulk_upsert(
    customer_id: str, items: list[dict[str, Any]], *, with_embedding: bool
) -> dict[str, Any]:
    """Payload of a bulk upsert; items are {"id", "data", "version"?}."""
    if not items:
        raise ValueError("items must not be empty")
    resolved: list[dict[str, Any]] = [
        {
            "id": check_item_id(i.get("id")),
            "data": _named(i.get("data") or {}),
            **_versioned(i.get("version"), i.get("data")),
        }
        for i in items
    ]
    _unique([str(i["id"]) for i in resolved])
    return {
        "customer_id": check_customer_id(customer_id),
        "items": resolved,
        "with_embedding": with_embedding,
    }


def bulk_delete(customer_id: str, ids: list[Any], *, version: int | None) -> dict[str, Any]:
    """Payload of a bulk delete."""
    if not ids:
        raise ValueError("ids must not be empty")
    return {
        "customer_id": check_customer_id(customer_id),
        "ids": _unique([check_item_id(i) for i in ids]),
        **_versioned(version, None),
    }


def delete_all(customer_id: str) -> dict[str, Any]:
    """Payload of deleting all items of a customer (ordered by acceptance alone)."""
    return {"customer_id": check_customer_id(customer_id)}
