"""Cluster APIs: info, health, `_cat/indices`, and the cluster features a YAML runner reads.

One node holds every primary; a replica can never be assigned, so an index with replicas is
yellow. Health waits (`wait_for_status`, `wait_for_active_shards`, `wait_for_nodes`) that this state
cannot meet answer `timed_out` at once (200, as ES 8 does) rather than after `timeout`:
nothing changes here by itself.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tools.standins.es.claim import CLUSTER_FEATURES, VERSION
from tools.standins.es.errors import bad_request, unsupported
from tools.standins.es.http import respond, runtime
from tools.standins.es.searching import bool_param
from tools.standins.es.store import Index

CLUSTER_NAME = "es-standin"
CLUSTER_UUID = secrets.token_urlsafe(16)[:22]
NODE_ID = secrets.token_urlsafe(16)[:22]
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


async def ping(request: web.Request) -> web.Response:
    """HEAD /."""
    return web.Response(status=200)


async def cluster_state(request: web.Request) -> web.Response:
    """GET /_cluster/state?filter_path=nodes_features: the features the stand-in implements."""
    if request.query.get("filter_path") != "nodes_features" or len(request.query) != 1:
        raise unsupported("the cluster state other than ?filter_path=nodes_features")
    features = {"node_id": NODE_ID, "features": list(CLUSTER_FEATURES)}
    return respond(request, {"nodes_features": [features]})


def index_health(index: Index) -> str:
    """One node: replicas can never be assigned, so any replica makes the index yellow."""
    return "yellow" if index.replicas else "green"


def _shard_counts(indices: list[Index]) -> dict[str, int]:
    primaries = sum(i.shards for i in indices)
    return {
        "active_primary_shards": primaries,
        "active_shards": primaries,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": sum(i.shards * i.replicas for i in indices),
        "unassigned_primary_shards": 0,
    }


def _index_detail(index: Index, shards: bool) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "status": index_health(index),
        "number_of_shards": index.shards,
        "number_of_replicas": index.replicas,
        **_shard_counts([index]),
    }
    if shards:
        detail["shards"] = {
            str(n): {
                "status": index_health(index),
                "primary_active": True,
                "active_shards": 1,
                "relocating_shards": 0,
                "initializing_shards": 0,
                "unassigned_shards": index.replicas,
                "unassigned_primary_shards": 0,
            }
            for n in range(index.shards)
        }
    return detail


def _unmet(request: web.Request, status: str, indices: list[Index]) -> bool:
    wanted = request.query.get("wait_for_status")
    if wanted is not None and _HEALTH_ORDER[status] > _HEALTH_ORDER[wanted]:
        return True
    nodes = request.query.get("wait_for_nodes")
    if nodes is not None and not _nodes_met(nodes):
        return True
    active = request.query.get("wait_for_active_shards")
    if active is None or active == "0":
        return False
    primaries = sum(i.shards for i in indices)
    if active == "all":
        return any(i.replicas for i in indices)
    return primaries < int(active)


def _nodes_met(wanted: str) -> bool:
    """Whether one node meets `wait_for_nodes` (`N`, `>=N`, `<N`, `ge(N)`, `lt(N)`, ...)."""
    match = re.fullmatch(r"(>=|<=|>|<|ge\(|le\(|gt\(|lt\()?(\d+)\)?", wanted.strip())
    if match is None:
        raise bad_request(f"cannot parse [wait_for_nodes] value [{wanted}]")
    op, count = (match.group(1) or "").rstrip("("), int(match.group(2))
    checks = {
        "": count == 1,
        ">=": count <= 1,
        "ge": count <= 1,
        "<=": count >= 1,
        "le": count >= 1,
        ">": count < 1,
        "gt": count < 1,
        "<": count > 1,
        "lt": count > 1,
    }
    return checks[op]


async def cluster_health(request: web.Request) -> web.Response:
    """GET /_cluster/health[/{index}]."""
    store = runtime(request).store
    wanted = request.query.get("wait_for_status")
    if wanted is not None and wanted not in _HEALTH_ORDER:
        raise bad_request(f"unknown cluster health status [{wanted}]")
    level = request.query.get("level", "cluster")
    if level not in ("cluster", "indices", "shards"):
        raise bad_request(f"No enum constant for level [{level}]")
    for name in ("wait_for_no_relocating_shards", "wait_for_no_initializing_shards"):
        bool_param(request.query, name)  # always met: shards never move or start here
    expression = request.match_info.get("index")
    indices = (
        list(store.indices.values())
        if expression is None
        else store.resolve(expression, ignore_unavailable=True)
    )
    missing = expression is not None and not indices
    counts = _shard_counts(indices)
    status = "red" if missing else "yellow" if counts["unassigned_shards"] else "green"
    timed_out = missing or _unmet(request, status, indices)
    total = counts["active_shards"] + counts["unassigned_shards"]
    percent = 100.0 * counts["active_shards"] / total if total else 100.0
    body: dict[str, Any] = {
        "cluster_name": CLUSTER_NAME,
        "status": status,
        "timed_out": timed_out,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        **counts,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": percent,
    }
    if level != "cluster":
        body["indices"] = {i.name: _index_detail(i, level == "shards") for i in indices}
    # ES 8 answers a health wait that timed out with 200 and `timed_out` (7.x: 408).
    return respond(request, body)


def _size(size: int) -> str:
    for unit, factor in (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + unit
    return f"{size}b"


# Columns of `_cat/indices` the stand-in fills, with their aliases; the default ones first.
_COLUMNS = {
    "health": ("h",),
    "status": ("s",),
    "index": ("i", "idx"),
    "uuid": ("id",),
    "pri": ("p", "shards.primary", "shardsPrimary"),
    "rep": ("r", "shards.replica", "shardsReplica"),
    "docs.count": ("dc", "docsCount"),
    "docs.deleted": ("dd", "docsDeleted"),
    "store.size": ("ss", "storeSize"),
    "pri.store.size": (),
    "dataset.size": (),
    "creation.date": ("cd",),
    "creation.date.string": ("cds",),
}
_DEFAULT_COLUMNS = list(_COLUMNS)[:11]
_ALIASES = {alias: name for name, aliases in _COLUMNS.items() for alias in (name, *aliases)}


def _row(index: Index) -> dict[str, str]:
    created = datetime.fromtimestamp(index.created_ms / 1000, tz=UTC)
    size = _size(index.store_bytes())
    return {
        "health": index_health(index),
        "status": "open",
        "index": index.name,
        "uuid": index.uuid,
        "pri": str(index.shards),
        "rep": str(index.replicas),
        "docs.count": str(index.doc_count()),
        "docs.deleted": str(index.live_tombstones()),
        "store.size": size,
        "pri.store.size": size,
        "dataset.size": size,
        "creation.date": str(index.created_ms),
        "creation.date.string": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def _columns(raw: str | None) -> list[str]:
    if raw is None:
        return _DEFAULT_COLUMNS
    names = []
    for part in raw.split(","):
        if part.strip() not in _ALIASES:
            raise unsupported(f"_cat/indices column [{part.strip()}]")
        names.append(_ALIASES[part.strip()])
    return names


async def cat_indices(request: web.Request) -> web.Response:
    """GET /_cat/indices[/{index}]: JSON with `format=json`, a text table otherwise."""
    store = runtime(request).store
    query = request.query
    health = query.get("health")
    if health is not None and health not in _HEALTH_ORDER:
        raise bad_request(f"unknown cluster health status [{health}]")
    indices = store.resolve(request.match_info.get("index", "*"))
    rows = [_row(i) for i in indices if health is None or index_health(i) == health]
    for part in reversed((query.get("s") or "index").split(",")):
        name, _, order = part.partition(":")
        rows.sort(key=lambda r: r[_ALIASES.get(name, name)], reverse=order == "desc")
    columns = _columns(query.get("h"))
    if query.get("format") == "json":
        return respond(request, [{c: row[c] for c in columns} for row in rows])
    if query.get("format") not in (None, "txt", "text"):
        raise unsupported(f"_cat format [{query['format']}]")
    lines = [[row[c] for c in columns] for row in rows]
    if bool_param(query, "v"):
        lines.insert(0, columns)
    widths = [max((len(line[n]) for line in lines), default=0) for n in range(len(columns))]
    text = "".join(
        " ".join(cell.ljust(widths[n]) for n, cell in enumerate(line)).rstrip() + "\n"
        for line in lines
    )
    return web.Response(text=text, content_type="text/plain")
