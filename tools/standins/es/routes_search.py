"""Search APIs: `_search`, `_count` and `_delete_by_query` over one or more indices."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tools.standins.es.errors import bad_request, unsupported, validation_failed
from tools.standins.es.http import forced_refresh, int_param, read_json, respond, runtime
from tools.standins.es.query import compile_query, is_filter_only
from tools.standins.es.store import Doc, Index, Store

MAX_RESULT_WINDOW = 10_000
_SEARCH_KEYS = frozenset({"query", "size", "from", "track_total_hits", "timeout", "_source"})


def _matches(
    store: Store, request: web.Request, query: object
) -> tuple[list[Index], list[tuple[Index, str, Doc]]]:
    """The searched indices and the matching docs, ordered by `_id` then index."""
    compile_query(query, {})  # refuse a bad query even when no index matches
    indices = store.resolve(
        request.match_info.get("index", "*"),
        ignore_unavailable=request.query.get("ignore_unavailable") == "true",
    )
    found: list[tuple[Index, str, Doc]] = []
    for index in indices:
        predicate = compile_query(query, index.mappings)
        found.extend(
            (index, doc_id, doc)
            for doc_id, doc in index.docs.items()
            if predicate(doc_id, doc.source)
        )
    found.sort(key=lambda hit: (hit[1], hit[0].name))
    return indices, found


def _shard_summary(indices: list[Index]) -> dict[str, int]:
    total = sum(i.shards for i in indices)
    return {"total": total, "successful": total, "skipped": 0, "failed": 0}


def _window(body: Mapping[str, Any], query: Mapping[str, str]) -> tuple[int, int]:
    # URL parameters win over the body, as in ES.
    size = int_param(query, "size", body.get("size", 10))
    start = int_param(query, "from", body.get("from", 0))
    for name, value in (("size", size), ("from", start)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad_request(f"[{name}] parameter cannot be negative, found [{value}]")
    assert size is not None and start is not None
    if start + size > MAX_RESULT_WINDOW:
        raise bad_request(
            f"Result window is too large, from + size must be less than or equal to: "
            f"[{MAX_RESULT_WINDOW}] but was [{start + size}]. See the scroll api for a more "
            "efficient way to request large data sets. This limit can be set by changing the "
            "[index.max_result_window] index level setting."
        )
    return start, size


async def search(request: web.Request) -> web.Response:
    """GET|POST /{index}/_search (index may be a list or a `*` pattern) and /_search."""
    started = time.monotonic()
    body = await read_json(request)
    for key in body:
        if key not in _SEARCH_KEYS:
            raise unsupported(f"search option [{key}]")
    with_source = body.get("_source", True)
    if not isinstance(with_source, bool):
        raise unsupported("_source filtering")
    start, size = _window(body, request.query)
    query = body.get("query")
    indices, found = _matches(runtime(request).store, request, query)
    score = 0.0 if is_filter_only(query) else 1.0
    hits = []
    for index, doc_id, doc in found[start : start + size]:
        hit: dict[str, Any] = {"_index": index.name, "_id": doc_id, "_score": score}
        if doc.routing is not None:
            hit["_routing"] = doc.routing
        if with_source:
            hit["_source"] = doc.source
        hits.append(hit)
    return respond(
        request,
        {
            "took": int((time.monotonic() - started) * 1000),
            "timed_out": False,
            "_shards": _shard_summary(indices),
            "hits": {
                "total": {"value": len(found), "relation": "eq"},
                "max_score": score if hits else None,
                "hits": hits,
            },
        },
    )


async def count(request: web.Request) -> web.Response:
    """GET|POST /{index}/_count."""
    body = await read_json(request)
    for key in body:
        if key != "query":
            raise bad_request(f"request does not support [{key}]", "parsing_exception")
    indices, found = _matches(runtime(request).store, request, body.get("query"))
    return respond(request, {"count": len(found), "_shards": _shard_summary(indices)})


async def delete_by_query(request: web.Request) -> web.Response:
    """POST /{index}/_delete_by_query: deletes like ES's internal deletes, tombstones included."""
    started = time.monotonic()
    if request.query.get("wait_for_completion") == "false":
        raise unsupported("wait_for_completion=false")
    forced_refresh(request.query)
    body = await read_json(request)
    if "query" not in body:
        raise validation_failed("query is missing")
    for key in body:
        if key not in ("query", "max_docs"):
            raise unsupported(f"delete_by_query option [{key}]")
    store = runtime(request).store
    _indices, found = _matches(store, request, body["query"])
    limit = int_param(request.query, "max_docs", body.get("max_docs"))
    if limit is not None:
        found = found[:limit]
    for index, doc_id, _doc in found:
        # ES deletes each hit with internal versioning: the tombstone is the current
        # version plus one, which is what a later external write is compared against.
        store.record(index.delete_doc(doc_id, version=None, version_type="internal"))
    return respond(
        request,
        {
            "took": int((time.monotonic() - started) * 1000),
            "timed_out": False,
            "total": len(found),
            "deleted": len(found),
            "batches": 1 if found else 0,
            "version_conflicts": 0,
            "noops": 0,
            "retries": {"bulk": 0, "search": 0},
            "throttled_millis": 0,
            "requests_per_second": -1.0,
            "throttled_until_millis": 0,
            "failures": [],
        },
    )
