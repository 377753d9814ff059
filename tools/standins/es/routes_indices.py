"""Index APIs: create, exists, get, delete, mappings, settings and `_refresh`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tools.standins.es.errors import EsError, bad_request
from tools.standins.es.http import copies_needed, read_json, respond, runtime
from tools.standins.es.mapping import merge_mappings
from tools.standins.es.searching import bool_param, target_indices
from tools.standins.es.store import Index


async def create_index(request: web.Request) -> web.Response:
    """PUT /{index} with optional `mappings` and `settings`."""
    name = request.match_info["index"]
    index = runtime(request).store.create_index(name, await read_json(request))
    # One node: more than one active copy of a shard never comes, so not acknowledged.
    started = copies_needed(request.query.get("wait_for_active_shards"), index) <= 1
    return respond(request, {"acknowledged": True, "shards_acknowledged": started, "index": name})


async def index_exists(request: web.Request) -> web.Response:
    """HEAD /{index}: 200 when every named index exists."""
    try:
        found = target_indices(runtime(request).store, request.match_info["index"], request.query)
    except EsError:
        found = []
    return web.Response(status=200 if found else 404)


def _settings(index: Index, flat: bool) -> dict[str, Any]:
    keys = {
        **index.settings,
        "index.uuid": index.uuid,
        "index.creation_date": str(index.created_ms),
        "index.provided_name": index.name,
        "index.version.created": "8530000",
    }
    if flat:
        return dict(sorted(keys.items()))
    nested: dict[str, Any] = {}
    for key, value in sorted(keys.items()):
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


async def get_index(request: web.Request) -> web.Response:
    """GET /{index}: aliases (always none), mappings and settings."""
    indices = target_indices(runtime(request).store, request.match_info["index"], request.query)
    return respond(
        request,
        {
            i.name: {"aliases": {}, "mappings": i.mappings, "settings": _settings(i, False)}
            for i in indices
        },
    )


async def get_settings(request: web.Request) -> web.Response:
    """GET /_settings and /{index}/_settings."""
    indices = target_indices(
        runtime(request).store, request.match_info.get("index", "_all"), request.query
    )
    flat = bool_param(request.query, "flat_settings")
    return respond(request, {i.name: {"settings": _settings(i, flat)} for i in indices})


async def delete_index(request: web.Request) -> web.Response:
    """DELETE /{index}: concrete names only, as ES's `action.destructive_requires_name`."""
    store = runtime(request).store
    expression = request.match_info["index"]
    if "*" in expression or expression == "_all":
        raise bad_request("Wildcard expressions or all indices are not allowed")
    for index in target_indices(store, expression, request.query):
        del store.indices[index.name]
    return respond(request, {"acknowledged": True})


async def get_mapping(request: web.Request) -> web.Response:
    """GET /_mapping and /{index}/_mapping."""
    indices = target_indices(
        runtime(request).store, request.match_info.get("index", "_all"), request.query
    )
    return respond(request, {i.name: {"mappings": i.mappings} for i in indices})


async def put_mapping(request: web.Request) -> web.Response:
    """PUT /{index}/_mapping: merge new fields; a type change is refused."""
    body = await read_json(request, required=True)
    indices = runtime(request).store.resolve(request.match_info["index"])
    merged = [(index, merge_mappings(index.mappings, body)) for index in indices]
    for index, mappings in merged:  # all or nothing
        index.mappings = mappings
    return respond(request, {"acknowledged": True})


async def refresh(request: web.Request) -> web.Response:
    """POST /_refresh and /{index}/_refresh: every shard's writes become searchable."""
    indices = target_indices(
        runtime(request).store, request.match_info.get("index", "_all"), request.query
    )
    for index in indices:
        index.refresh()
    total = sum(i.shards * (1 + i.replicas) for i in indices)
    successful = sum(i.shards for i in indices)
    return respond(request, {"_shards": {"total": total, "successful": successful, "failed": 0}})
