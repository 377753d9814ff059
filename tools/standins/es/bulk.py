"""The `_bulk` API: NDJSON parsing and per-item execution with ES's item results.

Parsing follows ES's bulk parser: what makes the whole request invalid (a malformed action
line, an unknown metadata parameter, an item that fails request validation) is one 400; what
goes wrong with one item (an empty `_id`, a document the mapping refuses, a version conflict)
fails that item only.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from tools.standins.es.claim import BULK_METADATA
from tools.standins.es.errors import (
    EsError,
    bad_request,
    index_not_found,
    unsupported,
    validation_failed,
)
from tools.standins.es.http import check_active_copies, write_body, write_cas
from tools.standins.es.shard import Cas, WriteResult
from tools.standins.es.store import Index, Store
from tools.standins.es.values import token_name

OPS = ("create", "delete", "index", "update")
# Real metadata ES reads that the stand-in does not implement.
_UNSUPPORTED_META = frozenset(
    {
        "pipeline",
        "require_alias",
        "require_data_stream",
        "dynamic_templates",
        "retry_on_conflict",
        "_source",
        "list_executed_pipelines",
    }
)
_REJECTED = (
    "rejected execution of primary operation [shard_id=[{index}][0], item count=1] on "
    "EsThreadPoolExecutor[name = standin/write, queue capacity = 10000]"
)
MAX_ID_BYTES = 512


@dataclass
class BulkAction:
    """One action of a bulk request, with its source line when it has one."""

    op: str
    index: str
    doc_id: str | None
    cas: Cas
    routing: str | None
    source: Any = None
    source_error: str | None = None


def new_id() -> str:
    """An auto-generated id shaped like ES's (20 URL-safe characters)."""
    return secrets.token_urlsafe(15)


def id_too_long(doc_id: str | None) -> str | None:
    """ES's request validation problem for an id over 512 bytes, if any."""
    size = len((doc_id or "").encode())
    if size > MAX_ID_BYTES:
        return (
            f"id [{doc_id}] is too long, must be no longer than {MAX_ID_BYTES} bytes but was: "
            f"{size}"
        )
    return None


def _malformed(line: int, detail: str) -> EsError:
    return bad_request(f"Malformed action/metadata line [{line}], {detail}")


def _action(line: int, text: str) -> tuple[str, dict[str, Any]]:
    try:
        action = json.loads(text)
    except ValueError:
        raise _malformed(line, "expected START_OBJECT but found [VALUE_STRING]") from None
    if not isinstance(action, dict):
        raise _malformed(line, f"expected START_OBJECT but found [{token_name(action)}]")
    if not action:
        raise _malformed(line, "expected FIELD_NAME but found [END_OBJECT]")
    op, meta = next(iter(action.items()))
    if op not in OPS:
        raise _malformed(
            line, f"expected field [create], [delete], [index] or [update] but found [{op}]"
        )
    if not isinstance(meta, dict):
        raise _malformed(
            line, f"expected START_OBJECT or END_OBJECT but found [{token_name(meta)}]"
        )
    if len(action) > 1:
        raise _malformed(line, "expected END_OBJECT but found [FIELD_NAME]")
    for key, value in meta.items():
        if key not in BULK_METADATA and key not in _UNSUPPORTED_META:
            raise bad_request(
                f"Action/metadata line [{line}] contains an unknown parameter [{key}]"
            )
        if isinstance(value, dict | list) and key != "_source":
            raise _malformed(
                line, f"expected a simple value for field [{key}] but found [{token_name(value)}]"
            )
    return op, meta


def parse_bulk(
    raw: bytes, default_index: str | None, default_routing: str | None = None
) -> list[BulkAction]:
    """Parse NDJSON into actions; 400 for what makes ES refuse the whole request."""
    if raw.strip() and not raw.endswith(b"\n"):
        raise bad_request("The bulk request must be terminated by a newline [\\n]")
    lines = raw.decode("utf-8").split("\n")[:-1]
    actions: list[BulkAction] = []
    problems: list[str] = []
    number = 0
    while number < len(lines):
        text = lines[number]
        number += 1
        if not text.strip():
            continue
        op, meta = _action(number, text)
        for key in _UNSUPPORTED_META & set(meta):
            raise unsupported(f"bulk metadata [{key}]")
        if op == "update":
            raise unsupported("bulk [update]")
        if meta.get("op_type") == "create" and op == "index":
            op = "create"
        index = meta.get("_index", default_index)
        doc_id = None if meta.get("_id") is None else str(meta["_id"])
        if not index:
            problems.append("index is missing")
        if op == "delete" and not doc_id:
            problems.append("id is missing")
        try:
            cas = write_cas(meta, create_only=op == "create", doc_id=doc_id or None)
        except EsError as exc:
            problems.append(exc.reason.removeprefix("Validation Failed: 1: ").rstrip(";"))
            cas = Cas()
        too_long = id_too_long(doc_id)
        if too_long:
            problems.append(too_long)
        routing = meta.get("routing", default_routing)
        item = BulkAction(op, str(index), doc_id, cas, None if routing is None else str(routing))
        if op != "delete":
            if number >= len(lines):
                break  # ES ignores an action whose source line never comes
            try:
                item.source = json.loads(lines[number]) if lines[number].strip() else None
            except ValueError as exc:
                item.source_error = str(exc)
            number += 1
        actions.append(item)
    if problems:
        raise validation_failed(*problems)
    if not actions:
        raise validation_failed("no requests added")
    return actions


def _write(
    store: Store, action: BulkAction, active_shards: str | None
) -> tuple[WriteResult, Index]:
    if action.op == "delete":
        assert action.doc_id is not None
        # ES only creates a missing index for a delete when the version is external, so
        # the tombstone has somewhere to live.
        index: Index | None = store.indices.get(action.index)
        if index is None:
            if action.cas.version_type == "internal":
                raise index_not_found(action.index)
            index = store.for_write(action.index)
        check_active_copies(active_shards, index)
        return index.delete_doc(action.doc_id, action.cas, routing=action.routing), index
    if action.doc_id == "":
        raise bad_request("if _id is specified it must not be empty")
    if action.source is None:
        raise EsError(400, "document_parsing_exception", "failed to parse, document is empty")
    if action.source_error is not None or not isinstance(action.source, dict):
        raise EsError(
            400,
            "document_parsing_exception",
            f"failed to parse: {action.source_error or 'source is not an object'}",
        )
    index = store.for_write(action.index)
    check_active_copies(active_shards, index)
    action.doc_id = action.doc_id or new_id()
    result = index.index_doc(
        action.doc_id,
        action.source,
        action.cas,
        create_only=action.op == "create",
        routing=action.routing,
    )
    return result, index


def _failure(action: BulkAction, status: int, error: dict[str, Any]) -> dict[str, Any]:
    head = {"_index": action.index, "_id": action.doc_id}
    return {action.op: {**head, "status": status, "error": error}}


def run_bulk(
    store: Store, actions: list[BulkAction], *, reject_odd: bool, active_shards: str | None = None
) -> tuple[dict[str, Any], list[WriteResult]]:
    """Apply the actions in order; ES's `errors` flag and `items`, and the applied writes."""
    items: list[dict[str, Any]] = []
    applied: list[WriteResult] = []
    for position, action in enumerate(actions):
        if reject_odd and position % 2 == 1:
            reason = _REJECTED.format(index=action.index)
            error = {"type": "es_rejected_execution_exception", "reason": reason}
            items.append(_failure(action, 429, error))
            continue
        try:
            result, index = _write(store, action, active_shards)
        except EsError as exc:
            items.append(_failure(action, exc.status, exc.cause()))
            continue
        applied.append(store.record(result))
        items.append({action.op: {**write_body(result, index), "status": result.status}})
    errors = any("error" in item[op] for item in items for op in item)
    return {"errors": errors, "items": items}, applied
