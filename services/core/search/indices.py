"""Index names and mappings; indices are created when missing, never dropped."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError

from services.core.search.catalog import KINDS, Kind


def index_name(prefix: str, kind: Kind) -> str:
    """The index of a kind."""
    return f"{prefix}{kind.plural}"


def mappings(vector_dims: int | None) -> dict[str, Any]:
    """Mappings shared by the catalog indices; other item fields are mapped dynamically."""
    properties: dict[str, Any] = {
        "customer_id": {"type": "keyword"},
        "item_id": {"type": "keyword"},
        # The write version, also kept as a field so delete-all can spare newer documents.
        "sync_version": {"type": "long"},
        "synced_at": {"type": "date"},
        "name": {"type": "text"},
        "description": {"type": "text"},
        "category": {"type": "keyword"},
        "sku": {"type": "keyword"},
        "tags": {"type": "keyword"},
        "price": {"type": "float"},
        "updated_at": {"type": "date"},
    }
    if vector_dims:
        properties["embedding"] = {
            "type": "dense_vector",
            "dims": vector_dims,
            "index": True,
            "similarity": "cosine",
        }
    return {"dynamic": True, "properties": properties}


class IndexManager:
    """Creates the catalog indices that are missing, once per process."""

    def __init__(self, client: AsyncElasticsearch, prefix: str, vector_dims: int | None) -> None:
        self._client = client
        self._prefix = prefix
        self._dims = vector_dims
        self._ready: set[str] = set()

    async def ensure(self, kind: Kind) -> str:
        """The index of `kind`, created with our mappings if it does not exist."""
        name = index_name(self._prefix, kind)
        if name in self._ready:
            return name
        if not await self._client.indices.exists(index=name):
            try:
                await self._client.indices.create(index=name, mappings=mappings(self._dims))
            except BadRequestError as exc:
                # Another worker created it between our check and our create.
                if "resource_already_exists_exception" not in str(exc.body):
                    raise
        self._ready.add(name)
        return name

    async def ensure_all(self) -> list[str]:
        """Create every catalog index that is missing."""
        return [await self.ensure(kind) for kind in KINDS.values()]
