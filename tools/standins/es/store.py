"""In-memory indices: settings, mappings and shards; the store of every index.

Documents live in shards (`shard`), routed by the `routing` value or else the id, as in ES
(`routing`). Versioning, tombstones and near-real-time search are per shard, as on a real
cluster: a `refresh=true` write refreshes the shard it went to, `_refresh` every shard.
"""

from __future__ import annotations

import fnmatch
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from tools.standins.es.documents import apply_document
from tools.standins.es.errors import EsError, index_not_found, unsupported
from tools.standins.es.mapping import check_mappings
from tools.standins.es.routing import default_routing_shards, shard_of
from tools.standins.es.settings import (
    check_settings,
    flatten_settings,
    int_setting,
    refresh_interval_s,
    time_value,
)
from tools.standins.es.shard import Cas, Clock, Doc, Shard, WriteResult

_INVALID_NAME_CHARS = set('\\/*?"<>| ,#:')


def check_index_name(name: str) -> None:
    """Refuse names ES refuses, with its `invalid_index_name_exception`."""
    problem = None
    if not name or name in (".", ".."):
        problem = "must not be '.' or '..'" if name else "must not be empty"
    elif name != name.lower():
        problem = "must be lowercase"
    elif name[0] in "_-+":
        problem = "must not start with '_', '-', or '+'"
    elif set(name) & _INVALID_NAME_CHARS:
        problem = 'must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?, #, :]'
    elif len(name.encode()) > 255:
        problem = "index name is too long"
    if problem:
        raise EsError(
            400,
            "invalid_index_name_exception",
            f"Invalid index name [{name}], {problem}",
            index_uuid="_na_",
            index=name,
        )


class Index:
    """One index: mappings, settings and its shards."""

    def __init__(
        self,
        name: str,
        mappings: dict[str, Any],
        settings: dict[str, str],
        gc_deletes_s: float,
        refresh_interval: str = "1s",
    ) -> None:
        self.name = name
        self.uuid = secrets.token_urlsafe(16)[:22]
        self.created_ms = int(time.time() * 1000)
        self.mappings = mappings
        self.settings = settings
        gc_setting = settings.get("index.gc_deletes")
        gc_s = gc_deletes_s if gc_setting is None else time_value(gc_setting, "index.gc_deletes")
        self.clock = Clock(refresh_interval_s(settings, refresh_interval))
        count = self.shards
        self.routing_shards = int_setting(
            settings, "index.number_of_routing_shards", default_routing_shards(count)
        )
        self.shard_list = [Shard(name, n, self.uuid, self.clock, gc_s) for n in range(count)]

    @property
    def replicas(self) -> int:
        """Configured replica count (never assigned: this is a one-node cluster)."""
        return int(self.settings["index.number_of_replicas"])

    @property
    def shards(self) -> int:
        """Configured primary count."""
        return int(self.settings["index.number_of_shards"])

    def setting(self, key: str, default: int) -> int:
        """An integer index setting."""
        return int_setting(self.settings, key, default)

    def routing_required(self) -> bool:
        """Whether the mapping says `_routing: {required: true}`."""
        routing = self.mappings.get("_routing", {})
        return isinstance(routing, dict) and routing.get("required") in (True, "true")

    def shard(self, doc_id: str, routing: str | None) -> Shard:
        """The shard a document goes to; 400 when the mapping requires a routing."""
        if routing is None and self.routing_required():
            raise EsError(
                400,
                "routing_missing_exception",
                f"routing is required for [{self.name}]/[{doc_id}]",
                index_uuid=self.uuid,
                index=self.name,
            )
        if self.shards == 1:
            return self.shard_list[0]
        key = doc_id if routing is None else routing
        return self.shard_list[shard_of(key, self.shards, self.routing_shards)]

    def get(self, doc_id: str, routing: str | None) -> Doc | None:
        """The live document (a real-time GET)."""
        return self.shard(doc_id, routing).docs.get(doc_id)

    def index_doc(
        self,
        doc_id: str,
        source: dict[str, Any],
        cas: Cas,
        *,
        create_only: bool,
        routing: str | None,
    ) -> WriteResult:
        """Index (or create) a document after mapping, version and sequence-number checks."""
        shard = self.shard(doc_id, routing)
        # ES parses the document (and applies dynamic mapping updates) before the engine
        # checks versions, so a bad document is a 400 even when its version would conflict.
        limit = self.setting("index.mapping.nested_objects.limit", 10_000)
        self.mappings = apply_document(self.mappings, source, doc_id, nested_limit=limit)
        return shard.index_doc(doc_id, source, cas, create_only=create_only, routing=routing)

    def delete_doc(self, doc_id: str, cas: Cas, *, routing: str | None) -> WriteResult:
        """Delete a document (a tombstone is left even when it did not exist, as in ES)."""
        return self.shard(doc_id, routing).delete_doc(doc_id, cas)

    def refresh(self) -> None:
        """Make every write of every shard searchable."""
        for shard in self.shard_list:
            shard.refresh()

    def searchable(self) -> Iterator[tuple[Shard, str, Doc]]:
        """Every document a search sees now, shard by shard."""
        for shard in self.shard_list:
            for doc_id, doc in shard.view().items():
                yield shard, doc_id, doc

    def doc_count(self) -> int:
        """Searchable documents (what `_cat/indices` reports)."""
        return sum(len(shard.view()) for shard in self.shard_list)

    def live_tombstones(self) -> int:
        """How many deletes still take part in version checks."""
        return sum(shard.live_tombstones() for shard in self.shard_list)

    def store_bytes(self) -> int:
        """A rough store size: the JSON size of the live sources."""
        return sum(
            len(json.dumps(doc.source)) for shard in self.shard_list for doc in shard.docs.values()
        )


class Store:
    """Every index of the stand-in plus the per-document count of applied writes."""

    def __init__(self, gc_deletes_s: float, refresh_interval: str = "1s") -> None:
        self.gc_deletes_s = gc_deletes_s
        # The `refresh_interval` of indices that do not set one (ES's is 1s).
        self.refresh_interval = refresh_interval
        self.indices: dict[str, Index] = {}
        self.applied: Counter[str] = Counter()

    def reset(self) -> None:
        """Drop every index and counter."""
        self.indices.clear()
        self.applied.clear()

    def create_index(self, name: str, body: dict[str, Any]) -> Index:
        """PUT /{index}: 400 if it exists already."""
        check_index_name(name)
        if name in self.indices:
            existing = self.indices[name]
            raise EsError(
                400,
                "resource_already_exists_exception",
                f"index [{name}/{existing.uuid}] already exists",
                index_uuid=existing.uuid,
                index=name,
            )
        for key in body:
            if key not in ("mappings", "settings", "aliases"):
                raise EsError(400, "parse_exception", f"unknown key [{key}] for create index")
        if body.get("aliases"):
            raise unsupported("aliases")
        mappings = check_mappings(body.get("mappings", {}))
        settings = check_settings(flatten_settings(body.get("settings", {})))
        index = Index(name, mappings, settings, self.gc_deletes_s, self.refresh_interval)
        self.indices[name] = index
        return index

    def get(self, name: str) -> Index:
        """An existing index, else 404 `index_not_found_exception`."""
        index = self.indices.get(name)
        if index is None:
            raise index_not_found(name)
        return index

    def for_write(self, name: str) -> Index:
        """The index a write goes to, created with empty mappings if missing (as ES does)."""
        return self.indices.get(name) or self.create_index(name, {})

    def resolve(
        self,
        expression: str,
        *,
        ignore_unavailable: bool = False,
        allow_no_indices: bool = True,
    ) -> list[Index]:
        """Indices named by a comma-separated list of names and `*` patterns, sorted."""
        found: dict[str, Index] = {}
        for part in expression.split(","):
            if part.startswith("-") and found:
                # An exclusion after other expressions, as ES reads `*,-logs-*`.
                for name in [n for n in found if fnmatch.fnmatchcase(n, part[1:])]:
                    del found[name]
            elif part in ("_all", "*", ""):
                found.update((n, i) for n, i in self.indices.items() if not n.startswith("."))
            elif "*" in part:
                found.update(
                    (n, i) for n, i in self.indices.items() if fnmatch.fnmatchcase(n, part)
                )
            elif part in self.indices:
                found[part] = self.indices[part]
            elif not ignore_unavailable:
                raise index_not_found(part)
        if not found and not allow_no_indices:
            raise index_not_found(expression)
        return [found[name] for name in sorted(found)]

    def record(self, result: WriteResult) -> WriteResult:
        """Count an applied write for `/stats`."""
        self.applied[f"{result.index}/{result.doc_id}"] += 1
        return result
