"""In-memory indices with Elasticsearch's versioning: internal, external, external_gte, tombstones.

A delete leaves a tombstone carrying the deleted version; it takes part in version checks
until `gc_deletes` seconds have passed (ES's `index.gc_deletes`, 60 s by default). After that
the id is unknown again, so an older external version is accepted once more, as on a real
cluster.
"""

from __future__ import annotations

import fnmatch
import json
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tools.standins.es.documents import apply_document
from tools.standins.es.errors import EsError, bad_request, index_not_found, version_conflict
from tools.standins.es.mapping import check_mappings

PRIMARY_TERM = 1
_INVALID_NAME_CHARS = set('\\/*?"<>| ,#:')
_TIME_UNITS = {
    "nanos": 1e-9,
    "micros": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_TIME_VALUE = re.compile(r"^(\d+(?:\.\d+)?)(nanos|micros|ms|s|m|h|d)$")


@dataclass
class Doc:
    """A live document."""

    source: dict[str, Any]
    version: int
    seq_no: int
    routing: str | None


@dataclass
class Tombstone:
    """What a delete leaves behind: the deleted version, until `expires_at` (monotonic)."""

    version: int
    expires_at: float


@dataclass
class WriteResult:
    """The outcome of an applied index or delete operation."""

    index: str
    doc_id: str
    version: int
    seq_no: int
    result: str  # created, updated, deleted, not_found

    @property
    def status(self) -> int:
        """HTTP status of this result, as ES answers it."""
        return {"created": 201, "not_found": 404}.get(self.result, 200)


def _time_value(text: str, setting: str) -> float:
    match = _TIME_VALUE.match(text.strip())
    if match is None:
        raise bad_request(
            f"failed to parse setting [{setting}] with value [{text}] as a time value"
        )
    return float(match.group(1)) * _TIME_UNITS[match.group(2)]


def flatten_settings(settings: object) -> dict[str, str]:
    """Index settings as ES keeps them: flat `index.*` keys with string values."""
    if not isinstance(settings, dict):
        raise bad_request("settings must be an object", "settings_exception")
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
            return
        key = prefix if prefix.startswith("index.") else f"index.{prefix}"
        flat[key] = str(value).lower() if isinstance(value, bool) else str(value)

    walk("", settings)
    return flat


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
    """One index: mappings, settings, live documents and delete tombstones."""

    def __init__(
        self, name: str, mappings: dict[str, Any], settings: dict[str, str], gc_deletes_s: float
    ) -> None:
        self.name = name
        self.uuid = secrets.token_urlsafe(16)[:22]
        self.created_ms = int(time.time() * 1000)
        self.mappings = mappings
        self.settings = {"index.number_of_shards": "1", "index.number_of_replicas": "1", **settings}
        for key, minimum in (("index.number_of_shards", 1), ("index.number_of_replicas", 0)):
            value = self.settings[key]
            if not value.isdigit() or int(value) < minimum:
                raise bad_request(f"Failed to parse value [{value}] for setting [{key}]")
        gc_setting = self.settings.get("index.gc_deletes")
        self.gc_deletes_s = (
            gc_deletes_s if gc_setting is None else _time_value(gc_setting, "index.gc_deletes")
        )
        self.docs: dict[str, Doc] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self._next_seq_no = 0

    @property
    def replicas(self) -> int:
        """Configured replica count (never assigned: this is a one-node cluster)."""
        return int(self.settings["index.number_of_replicas"])

    @property
    def shards(self) -> int:
        """Configured primary count (reported only: the data lives in one place)."""
        return int(self.settings["index.number_of_shards"])

    def current_version(self, doc_id: str) -> int | None:
        """The version ES compares against: the live doc's, else a live tombstone's."""
        doc = self.docs.get(doc_id)
        if doc is not None:
            return doc.version
        tombstone = self.tombstones.get(doc_id)
        if tombstone is None:
            return None
        if time.monotonic() >= tombstone.expires_at:
            del self.tombstones[doc_id]  # ES's gc_deletes: the delete is forgotten
            return None
        return tombstone.version

    def live_tombstones(self) -> int:
        """How many deletes still take part in version checks."""
        live = [d for d in list(self.tombstones) if self.current_version(d) is not None]
        return len(live)

    def _seq_no(self) -> int:
        self._next_seq_no += 1
        return self._next_seq_no - 1

    def _conflict(self, doc_id: str, detail: str) -> EsError:
        return version_conflict(doc_id, detail, index=self.name, index_uuid=self.uuid)

    def _next_version(
        self, doc_id: str, current: int | None, version: int | None, version_type: str
    ) -> int:
        if version_type == "internal":
            return 1 if current is None else current + 1
        assert version is not None  # checked by the request layer
        if current is not None:
            if version_type == "external" and current >= version:
                raise self._conflict(
                    doc_id,
                    f"current version [{current}] is higher or equal to the one provided "
                    f"[{version}]",
                )
            if version_type == "external_gte" and current > version:
                raise self._conflict(
                    doc_id,
                    f"current version [{current}] is higher than the one provided [{version}]",
                )
        return version

    def index_doc(
        self,
        doc_id: str,
        source: dict[str, Any],
        *,
        version: int | None,
        version_type: str,
        create_only: bool,
        routing: str | None,
    ) -> WriteResult:
        """Index (or create) a document after version and mapping checks."""
        # ES parses the document (and applies dynamic mapping updates) before the engine
        # checks versions, so a bad document is a 400 even when its version would conflict.
        self.mappings = apply_document(self.mappings, source, doc_id)
        current = self.current_version(doc_id)
        if create_only and doc_id in self.docs:
            raise self._conflict(doc_id, f"document already exists (current version [{current}])")
        new_version = self._next_version(doc_id, current, version, version_type)
        result = "updated" if doc_id in self.docs else "created"
        seq_no = self._seq_no()
        self.docs[doc_id] = Doc(source, new_version, seq_no, routing)
        self.tombstones.pop(doc_id, None)
        return WriteResult(self.name, doc_id, new_version, seq_no, result)

    def delete_doc(self, doc_id: str, *, version: int | None, version_type: str) -> WriteResult:
        """Delete a document, leaving a tombstone even when it did not exist (as ES does)."""
        current = self.current_version(doc_id)
        new_version = self._next_version(doc_id, current, version, version_type)
        result = "deleted" if self.docs.pop(doc_id, None) is not None else "not_found"
        self.tombstones[doc_id] = Tombstone(new_version, time.monotonic() + self.gc_deletes_s)
        return WriteResult(self.name, doc_id, new_version, self._seq_no(), result)

    def store_bytes(self) -> int:
        """A rough store size: the JSON size of the live sources."""
        return sum(len(json.dumps(doc.source)) for doc in self.docs.values())


class Store:
    """Every index of the stand-in plus the per-document count of applied writes."""

    def __init__(self, gc_deletes_s: float) -> None:
        self.gc_deletes_s = gc_deletes_s
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
        unknown = sorted(set(body) - {"mappings", "settings", "aliases"})
        if unknown:
            raise bad_request(f"unknown key [{unknown[0]}] for create index", "parse_exception")
        if body.get("aliases"):
            raise bad_request("unknown key [aliases]: the ES stand-in does not support aliases")
        mappings = check_mappings(body.get("mappings", {}))
        index = Index(name, mappings, flatten_settings(body.get("settings", {})), self.gc_deletes_s)
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

    def resolve(self, expression: str, *, ignore_unavailable: bool = False) -> list[Index]:
        """Indices named by a comma-separated list of names and `*` patterns, sorted."""
        found: dict[str, Index] = {}
        for part in expression.split(","):
            if part in ("_all", "*", ""):
                found.update((n, i) for n, i in self.indices.items() if not n.startswith("."))
            elif "*" in part:
                found.update(
                    (n, i) for n, i in self.indices.items() if fnmatch.fnmatchcase(n, part)
                )
            elif part in self.indices:
                found[part] = self.indices[part]
            elif not ignore_unavailable:
                raise index_not_found(part)
        return [found[name] for name in sorted(found)]

    def record(self, result: WriteResult) -> WriteResult:
        """Count an applied write for `/stats`."""
        self.applied[f"{result.index}/{result.doc_id}"] += 1
        return result
