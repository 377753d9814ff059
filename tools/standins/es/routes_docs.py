"""Document APIs: index, create, get, exists, delete and `_bulk`."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tools.standins.es.bulk import id_too_long, new_id, parse_bulk, run_bulk
from tools.standins.es.errors import (
    bad_request,
    index_not_found,
    validation_failed,
    version_conflict,
)
from tools.standins.es.http import (
    JSON_TYPES,
    NDJSON_TYPES,
    apply_refresh,
    check_active_copies,
    check_content_type,
    check_version_type,
    int_param,
    read_json,
    refresh_policy,
    respond,
    runtime,
    write_body,
    write_cas,
)
from tools.standins.es.mapping import lookup_field
from tools.standins.es.searching import bool_param
from tools.standins.es.shard import PRIMARY_TERM, Doc
from tools.standins.es.store import Index
from tools.standins.es.values import values_at


async def _index(request: web.Request, doc_id: str | None, *, create_only: bool) -> web.Response:
    state = runtime(request)
    query = request.query
    policy = refresh_policy(query)
    op_type = query.get("op_type", "create" if create_only else "index")
    if op_type not in ("index", "create"):
        raise bad_request(f"opType must be 'create' or 'index', found: [{op_type}]")
    create_only = op_type == "create"
    cas = write_cas(query, create_only=create_only, doc_id=doc_id)
    too_long = id_too_long(doc_id)
    if too_long:
        raise validation_failed(too_long)
    source = await read_json(request, required=True)
    index = state.store.for_write(request.match_info["index"])
    check_active_copies(query.get("wait_for_active_shards"), index)
    result = state.store.record(
        index.index_doc(
            doc_id or new_id(),
            source,
            cas,
            create_only=create_only,
            routing=query.get("routing"),
        )
    )
    forced = await apply_refresh(policy, state.store, [result])
    return respond(request, write_body(result, index, forced=forced), result.status)


async def index_doc(request: web.Request) -> web.Response:
    """PUT|POST /{index}/_doc/{id}."""
    return await _index(request, request.match_info["id"], create_only=False)


async def index_new_doc(request: web.Request) -> web.Response:
    """POST /{index}/_doc: an auto-generated id (a create unless `op_type` says otherwise)."""
    return await _index(request, None, create_only=True)


async def create_doc(request: web.Request) -> web.Response:
    """PUT|POST /{index}/_create/{id}."""
    return await _index(request, request.match_info["id"], create_only=True)


def _read(request: web.Request) -> tuple[Index, str, Doc | None]:
    query = request.query
    index = runtime(request).store.get(request.match_info["index"])
    doc_id = request.match_info["id"]
    routing = query.get("routing")
    shard = index.shard(doc_id, routing)
    if bool_param(query, "refresh"):
        shard.refresh()
    realtime = bool_param(query, "realtime", default=True)
    doc = shard.docs.get(doc_id) if realtime else shard.view().get(doc_id)
    version = int_param(query, "version")
    check_version_type(query.get("version_type"))
    if doc is not None and version is not None and version != doc.version:
        # ES's read check: any difference is a conflict, whatever the version type.
        raise version_conflict(
            doc_id,
            f"current version [{doc.version}] is different than the one provided [{version}]",
            index=index.name,
            index_uuid=index.uuid,
            shard=shard.number,
        )
    return index, doc_id, doc


def _stored_fields(index: Index, doc: Doc, names: list[str]) -> dict[str, Any]:
    """The `fields` of a GET with `stored_fields`: mapped fields stored apart (`store: true`)."""
    fields: dict[str, Any] = {}
    for name in names:
        source_path, spec = lookup_field(index.mappings, name)
        if spec is not None and spec.get("store") in (True, "true"):
            values = values_at(doc.source, source_path.split("."))
            if values:
                fields[name] = values
    return fields


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
    body["found"] = True
    stored = request.query.get("stored_fields")
    if stored is None:
        body["_source"] = doc.source
    else:
        # With stored fields asked for, ES returns those (and no `_source` unless named).
        names = [n for n in stored.split(",") if n]
        if "_source" in names:
            body["_source"] = doc.source
        fields = _stored_fields(index, doc, [n for n in names if not n.startswith("_")])
        if fields:
            body["fields"] = fields
    return respond(request, body)


async def doc_exists(request: web.Request) -> web.Response:
    """HEAD /{index}/_doc/{id}."""
    doc = _read(request)[2]
    return web.Response(status=200 if doc is not None else 404)


async def delete_doc(request: web.Request) -> web.Response:
    """DELETE /{index}/_doc/{id}: 404 `not_found` for a missing doc, tombstone recorded anyway."""
    state = runtime(request)
    query = request.query
    policy = refresh_policy(query)
    cas = write_cas(query)
    name = request.match_info["index"]
    index = state.store.indices.get(name)
    if index is None:
        # Like bulk: only an externally versioned delete creates the index for its tombstone.
        if cas.version_type == "internal":
            raise index_not_found(name)
        index = state.store.for_write(name)
    check_active_copies(query.get("wait_for_active_shards"), index)
    result = state.store.record(
        index.delete_doc(request.match_info["id"], cas, routing=query.get("routing"))
    )
    forced = await apply_refresh(policy, state.store, [result])
    return respond(request, write_body(result, index, forced=forced), result.status)


async def bulk(request: web.Request) -> web.Response:
    """POST /_bulk and /{index}/_bulk."""
    started = time.monotonic()
    state = runtime(request)
    check_content_type(request, NDJSON_TYPES | JSON_TYPES)
    policy = refresh_policy(request.query)
    actions = parse_bulk(
        await request.read(), request.match_info.get("index"), request.query.get("routing")
    )
    fault = state.faults.current()
    outcome, applied = run_bulk(
        state.store,
        actions,
        reject_odd=fault is not None and fault.mode == "bulk_reject",
        active_shards=request.query.get("wait_for_active_shards"),
    )
    forced = await apply_refresh(policy, state.store, applied)
    if forced and policy == "immediate":
        for item in outcome["items"]:
            for result in item.values():
                if "error" not in result:
                    result["forced_refresh"] = True
    took = int((time.monotonic() - started) * 1000)
    return respond(request, {"errors": outcome["errors"], "took": took, "items": outcome["items"]})
