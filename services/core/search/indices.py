"""Index names and mappings; indices are created when missing, never dropped."""

from __future__ import annotations

import copy
from typing import Any

from elasticsearch import AsyncElasticsearch, BadRequestError

from services.core.search.catalog import KINDS, Kind
from services.core.search.document import CALLER_FIELDS, OWN_FIELDS, VECTOR_FIELD


def index_name(prefix: str, kind: Kind) -> str:
    """The index of a kind."""
    return f"{prefix}{kind.plural}"


def mappings(vector_dims: int | None) -> dict[str, Any]:
    """Mappings shared by the catalog indices; other item fields are mapped dynamically."""
    properties: dict[str, Any] = copy.deepcopy({**OWN_FIELDS, **CALLER_FIELDS})
    if vector_dims:
        properties[VECTOR_FIELD] = {
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
