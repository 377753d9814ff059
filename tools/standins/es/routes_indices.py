"""Cluster and index APIs: info, health, `_cat/indices`, create/exists/get/delete, mappings."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from tools.standins.es.errors import EsError, bad_request
from tools.standins.es.http import read_json, respond, runtime, shards
from tools.standins.es.mapping import merge_mappings
from tools.standins.es.store import Index

VERSION = "8.19.0"
CLUSTER_NAME = "es-standin"
CLUSTER_UUID = secrets.token_urlsafe(16)[:22]
_HEALTH_ORDER = {"green": 0, "yellow": 1, "red": 2}


async def root(request: web.Request) -> web.Response:
    """GET /: node and version info, which the client reads to know it talks to ES 8."""
    return respond(
        request,
        {
            "name": "standin-node",
            "cluster_name": CLUSTER_NAME,
            "cluster_uuid": CLUSTER_UUID,
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "standin",
                "build_hash": "0000000000000000000000000000000000000000",
                "build_date": "2025-01-01T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": "9.12.2",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
            },
            "tagline": "You Know, for Search",
        },
    )


def _health(index: Index) -> str:
    # One node: replicas can never be assigned, so any replica makes the index yellow.
    return "yellow" if index.replicas else "green"


async def cluster_health(request: web.Request) -> web.Response:
    """GET /_cluster/health; `wait_for_status` that cannot be met answers 408 at once."""
    indices = list(runtime(request).store.indices.values())
    primaries = sum(i.shards for i in indices)
    unassigned = sum(i.shards * i.replicas for i in indices)
    status = "yellow" if unassigned else "green"
    wanted = request.query.get("wait_for_status")
    if wanted is not None and wanted not in _HEALTH_ORDER:
        raise bad_request(f"unknown cluster health status [{wanted}]")
    timed_out = wanted is not None and _HEALTH_ORDER[status] > _HEALTH_ORDER[wanted]
    total = primaries + unassigned
    return respond(
        request,
        {
            "cluster_name": CLUSTER_NAME,
            "status": status,
            "timed_out": timed_out,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": primaries,
            "active_shards": primaries,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": unassigned,
            "unassigned_primary_shards": 0,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0 * primaries / total if total else 100.0,
        },
        408 if timed_out else 200,
    )


def _size(size: int) -> str:
    for unit, factor in (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f}{unit}"
    return f"{size}b"


async def cat_indices(request: web.Request) -> web.Response:
    """GET /_cat/indices[/{index}]: JSON with `format=json`, a text table otherwise."""
    store = runtime(request).store
    indices = store.resolve(request.match_info.get("index", "*"))
    rows = [
        {
            "health": _health(i),
            "status": "open",
            "index": i.name,
            "uuid": i.uuid,
            "pri": str(i.shards),
            "rep": str(i.replicas),
            "docs.count": str(len(i.docs)),
            "docs.deleted": str(i.live_tombstones()),
            "store.size": _size(i.store_bytes()),
            "pri.store.size": _size(i.store_bytes()),
            "dataset.size": _size(i.store_bytes()),
        }
        for i in indices
    ]
    if request.query.get("format") == "json":
        return respond(request, rows)
    lines = [" ".join(row.values()) for row in rows]
    if "v" in request.query:
        lines.insert(0, " ".join(rows[0].keys()) if rows else "")
    return web.Response(text="".join(f"{line}\n" for line in lines), content_type="text/plain")


async def create_index(request: web.Request) -> web.Response:
    """PUT /{index} with optional `mappings` and `settings`."""
    name = request.match_info["index"]
    runtime(request).store.create_index(name, await read_json(request))
    return respond(request, {"acknowledged": True, "shards_acknowledged": True, "index": name})


async def index_exists(request: web.Request) -> web.Response:
    """HEAD /{index}: 200 when every named index exists."""
    try:
        found = runtime(request).store.resolve(request.match_info["index"])
    except EsError:
        found = []
    return web.Response(status=200 if found else 404)


def _nested_settings(index: Index) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    flat = {
        **index.settings,
        "index.uuid": index.uuid,
        "index.creation_date": str(index.created_ms),
        "index.provided_name": index.name,
    }
    for key, value in sorted(flat.items()):
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


async def get_index(request: web.Request) -> web.Response:
    """GET /{index}: aliases (always none), mappings and settings."""
    indices = runtime(request).store.resolve(request.match_info["index"])
    return respond(
        request,
        {
            i.name: {"aliases": {}, "mappings": i.mappings, "settings": _nested_settings(i)}
            for i in indices
        },
    )


async def delete_index(request: web.Request) -> web.Response:
    """DELETE /{index}: concrete names only, as ES's `action.destructive_requires_name`."""
    store = runtime(request).store
    expression = request.match_info["index"]
    if "*" in expression or expression == "_all":
        raise bad_request("Wildcard expressions or all indices are not allowed")
    for index in store.resolve(expression):
        del store.indices[index.name]
    return respond(request, {"acknowledged": True})


async def get_mapping(request: web.Request) -> web.Response:
    """GET /{index}/_mapping."""
    indices = runtime(request).store.resolve(request.match_info.get("index", "*"))
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
    """POST /{index}/_refresh: a no-op, since every write is visible at once here."""
    indices = runtime(request).store.resolve(request.match_info.get("index", "*"))
    total = sum(i.shards * (1 + i.replicas) for i in indices)
    result = shards(total)
    result["successful"] = sum(i.shards for i in indices)
    return respond(request, {"_shards": result})
