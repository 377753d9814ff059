"""The `_bulk` API: NDJSON parsing and per-item execution with ES's item results."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from tools.standins.es.errors import (
    EsError,
    bad_request,
    index_not_found,
    unsupported,
    validation_failed,
)
from tools.standins.es.http import versioning, write_body
from tools.standins.es.store import Index, Store, WriteResult

OPS = ("create", "delete", "index", "update")
_META = frozenset(
    {
        "_index",
        "_id",
        "routing",
        "version",
        "version_type",
        "if_seq_no",
        "if_primary_term",
        "pipeline",
        "require_alias",
        "require_data_stream",
        "dynamic_templates",
        "retry_on_conflict",
        "_source",
        "list_executed_pipelines",
    }
)
_UNSUPPORTED_META = ("if_seq_no", "if_primary_term", "pipeline", "dynamic_templates")
_REJECTED = (
    "rejected execution of primary operation [shard_id=[{index}][0], item count=1] on "
    "EsThreadPoolExecutor[name = standin/write, queue capacity = 10000]"
)


@dataclass
class BulkAction:
    """One action of a bulk request, with its source line when it has one."""

    op: str
    index: str
    doc_id: str | None
    meta: dict[str, Any]
    source: Any = None
    source_error: str | None = None


def new_id() -> str:
    """An auto-generated id shaped like ES's (20 URL-safe characters)."""
    return secrets.token_urlsafe(15)


def check_doc_id(doc_id: str) -> None:
    """ES's limits on `_id`."""
    if doc_id == "":
        raise validation_failed("if _id is specified it must not be empty")
    size = len(doc_id.encode())
    if size > 512:
        raise validation_failed(
            f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: {size}"
        )


def parse_bulk(raw: bytes, default_index: str | None) -> list[BulkAction]:
    """Parse NDJSON into actions; 400 for what makes ES refuse the whole request."""
    if raw.strip() and not raw.endswith(b"\n"):
        raise bad_request("The bulk request must be terminated by a newline [\\n]")
    lines = raw.decode("utf-8").split("\n")
    actions: list[BulkAction] = []
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except ValueError:
            raise bad_request(
                f"Malformed action/metadata line [{number}], expected START_OBJECT"
            ) from None
        if not isinstance(action, dict) or len(action) != 1:
            raise bad_request(
                f"Malformed action/metadata line [{number}], expected one action object"
            )
        ((op, meta),) = action.items()
        if op not in OPS:
            raise bad_request(
                f"Malformed action/metadata line [{number}], expected one of "
                f"[create, delete, index, update] but found [{op}]"
            )
        if not isinstance(meta, dict):
            raise bad_request(f"Malformed action/metadata line [{number}], expected START_OBJECT")
        for key in meta:
            if key not in _META:
                raise bad_request(
                    f"Action/metadata line [{number}] contains an unknown parameter [{key}]"
                )
        index = meta.get("_index", default_index)
        if not index:
            raise validation_failed("index is missing")
        doc_id = None if meta.get("_id") is None else str(meta["_id"])
        if doc_id is not None:
            check_doc_id(doc_id)
        elif op == "delete":
            raise validation_failed("id is missing")
        versioning(meta.get("version"), meta.get("version_type"), create_only=op == "create")
        item = BulkAction(op, str(index), doc_id, meta)
        if op != "delete":
            if number >= len(lines) or not lines[number].strip():
                raise bad_request(f"Bulk action on line [{number}] is missing its source line")
            try:
                item.source = json.loads(lines[number])
            except ValueError as exc:
                item.source_error = str(exc)
            number += 1
        actions.append(item)
    if not actions:
        raise validation_failed("no requests added")
    return actions


def _write(store: Store, action: BulkAction) -> WriteResult:
    for key in _UNSUPPORTED_META:
        if key in action.meta:
            raise unsupported(f"bulk metadata [{key}]")
    if action.op == "update":
        raise unsupported("bulk [update]")
    version, version_type = versioning(action.meta.get("version"), action.meta.get("version_type"))
    routing = action.meta.get("routing")
    if action.op == "delete":
        assert action.doc_id is not None
        # ES only creates a missing index for a delete when the version is external, so
        # the tombstone has somewhere to live.
        index: Index | None = store.indices.get(action.index)
        if index is None:
            if version_type == "internal":
                raise index_not_found(action.index)
            index = store.for_write(action.index)
        return index.delete_doc(action.doc_id, version=version, version_type=version_type)
    if action.source_error is not None or not isinstance(action.source, dict):
        raise EsError(
            400,
            "document_parsing_exception",
            f"failed to parse: {action.source_error or 'source is not an object'}",
        )
    index = store.for_write(action.index)
    action.doc_id = action.doc_id or new_id()
    return index.index_doc(
        action.doc_id,
        action.source,
        version=version,
        version_type=version_type,
        create_only=action.op == "create",
        routing=None if routing is None else str(routing),
    )


def _failure(action: BulkAction, status: int, error: dict[str, Any]) -> dict[str, Any]:
    head = {"_index": action.index, "_id": action.doc_id}
    return {action.op: {**head, "status": status, "error": error}}


def run_bulk(store: Store, actions: list[BulkAction], *, reject_odd: bool) -> dict[str, Any]:
    """Apply the actions in order; ES's `errors` flag and `items`."""
    items: list[dict[str, Any]] = []
    for position, action in enumerate(actions):
        if reject_odd and position % 2 == 1:
            reason = _REJECTED.format(index=action.index)
            error = {"type": "es_rejected_execution_exception", "reason": reason}
            items.append(_failure(action, 429, error))
            continue
        try:
            result = store.record(_write(store, action))
        except EsError as exc:
            items.append(_failure(action, exc.status, exc.cause()))
            continue
        body = write_body(result, store.indices[result.index])
        items.append({action.op: {**body, "status": result.status}})
    errors = any("error" in item[action] for item in items for action in item)
    return {"errors": errors, "items": items}
