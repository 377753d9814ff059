"""The Elasticsearch document of a catalog item: the caller's data plus the fields we add.

One place for the names: the writer adds these fields, the index mappings declare them, and
the API refuses caller data that would collide with them (`fieldnames`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Fields the catalog sets on every document, with their mappings.
OWN_FIELDS: dict[str, dict[str, Any]] = {
    "customer_id": {"type": "keyword"},
    "item_id": {"type": "keyword"},
    # The write version, also kept as a field so delete-all can spare newer documents.
    "sync_version": {"type": "long"},
    "synced_at": {"type": "date"},
}
# The vector added by `with_embedding` (mapped when embeddings are configured).
VECTOR_FIELD = "embedding"
# Common caller fields mapped ahead of time; other caller fields are mapped dynamically.
CALLER_FIELDS: dict[str, dict[str, Any]] = {
    "name": {"type": "text"},
    "description": {"type": "text"},
    "category": {"type": "keyword"},
    "sku": {"type": "keyword"},
    "tags": {"type": "keyword"},
    "price": {"type": "float"},
    "updated_at": {"type": "date"},
}
RESERVED_NAMES = frozenset(OWN_FIELDS) | {VECTOR_FIELD}


def build_document(
    data: Mapping[str, Any],
    *,
    customer_id: str,
    item_id: str,
    version: int,
    synced_at: str,
    vector: list[float] | None,
) -> dict[str, Any]:
    """The document indexed for an item."""
    document = {
        **data,
        "customer_id": customer_id,
        "item_id": item_id,
        "sync_version": version,
        "synced_at": synced_at,
    }
    if vector is not None:
        document[VECTOR_FIELD] = vector
    return document
