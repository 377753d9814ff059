"""Document APIs: index, create, get, exists, delete and `_bulk`."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tools.standins.es.bulk import check_doc_id, new_id, parse_bulk, run_bulk
from tools.standins.es.errors import bad_request, index_not_found, version_conflict
from tools.standins.es.http import (
    JSON_TYPES,
    NDJSON_TYPES,
    check_content_type,
    check_version_type,
    forced_refresh,
    int_param,
    read_json,
    respond,
    runtime,
    versioning,
    write_body,
)
from tools.standins.es.store import PRIMARY_TERM, Doc, Index


async def _index(request: web.Request, doc_id: str, *, create_only: bool) -> web.Response:
    state = runtime(request)
    query = request.query
    check_doc_id(doc_id)
    refreshed = forced_refresh(query)
    op_type = query.get("op_type", "create" if create_only else "index")
    if op_type not in ("index", "create"):
        raise bad_request(f"opType must be 'create' or 'index', found: [{op_type}]")
    create_only = op_type == "create"
    version, version_type = versioning(
        query.get("version"), query.get("version_type"), create_only=create_only
    )
    source = await read_json(request, required=True)
    index = state.store.for_write(request.match_info["index"])
    result = state.store.record(
        index.index_doc(
            doc_id,
            source,
            version=version,
            version_type=version_type,
            create_only=create_only,
            routing=query.get("routing"),
        )
    )
    return respond(request, write_body(result, index, refreshed=refreshed), result.status)


async def index_doc(request: web.Request) -> web.Response:
    """PUT|POST /{index}/_doc/{id}."""
    return await _index(request, request.match_info["id"], create_only=False)


async def index_new_doc(request: web.Request) -> web.Response:
    """POST /{index}/_doc: an auto-generated id, always a create."""
    return await _index(request, new_id(), create_only=True)


async def create_doc(request: web.Request) -> web.Response:
    """PUT|POST /{index}/_create/{id}."""
    return await _index(request, request.match_info["id"], create_only=True)


def _read(request: web.Request) -> tuple[Index, str, Doc | None]:
    index = runtime(request).store.get(request.match_info["index"])
    doc_id = request.match_info["id"]
    doc = index.docs.get(doc_id)
    version = int_param(request.query, "version")
    check_version_type(request.query.get("version_type"))
    if doc is not None and version is not None and version != doc.version:
        # ES's read check: any difference is a conflict, whatever the version type.
        raise version_conflict(
            doc_id,
            f"current version [{doc.version}] is different than the one provided [{version}]",
            index=index.name,
            index_uuid=index.uuid,
        )
    return index, doc_id, doc


async def get_doc(request: web.Request) -> web.Response:
    """GET /{index}/_doc/{id}."""
    index, doc_id, doc = _read(request)
    if doc is None:
        return respond(request, {"_index": index.name, "_id": doc_id, "found": False}, 404)
    body: dict[str, Any] = {
        "_index": index.name,
        "_id": doc_id,
        "_version": doc.version,
        "_seq_no": doc.seq_no,
        "_primary_term": PRIMARY_TERM,
    }
    if doc.routing is not None:
        body["_routing"] = doc.routing
    body.update(found=True, _source=doc.source)
    return respond(request, body)


async def doc_exists(request: web.Request) -> web.Response:
    """HEAD /{index}/_doc/{id}."""
    doc = _read(request)[2]
    return web.Response(status=200 if doc is not None else 404)


async def delete_doc(request: web.Request) -> web.Response:
    """DELETE /{index}/_doc/{id}: 404 `not_found` for a missing doc, tombstone recorded anyway."""
    state = runtime(request)
    query = request.query
    refreshed = forced_refresh(query)
    version, version_type = versioning(query.get("version"), query.get("version_type"))
    name = request.match_info["index"]
    index = state.store.indices.get(name)
    if index is None:
        # Like bulk: only an externally versioned delete creates the index for its tombstone.
        if version_type == "internal":
            raise index_not_found(name)
        index = state.store.for_write(name)
    result = state.store.record(
        index.delete_doc(request.match_info["id"], version=version, version_type=version_type)
    )
    return respond(request, write_body(result, index, refreshed=refreshed), result.status)


async def bulk(request: web.Request) -> web.Response:
    """POST /_bulk and /{index}/_bulk."""
    started = time.monotonic()
    state = runtime(request)
    check_content_type(request, NDJSON_TYPES | JSON_TYPES)
    forced_refresh(request.query)
    actions = parse_bulk(await request.read(), request.match_info.get("index"))
    fault = state.faults.current()
    outcome = run_bulk(
        state.store, actions, reject_odd=fault is not None and fault.mode == "bulk_reject"
    )
    took = int((time.monotonic() - started) * 1000)
    return respond(request, {"errors": outcome["errors"], "took": took, "items": outcome["items"]})
