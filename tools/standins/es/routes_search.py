"""Search APIs: `_search`, `_count` and `_delete_by_query` over one or more indices.

All three see each shard's last refreshed view (`shard`), not the live documents.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tools.standins.es import dbq
from tools.standins.es.claim import KNOWN_UNSUPPORTED_SEARCH_KEYS
from tools.standins.es.errors import EsError, bad_request, unsupported, validation_failed
from tools.standins.es.http import check_active_copies, int_param, read_json, respond, runtime
from tools.standins.es.query import is_filter_only
from tools.standins.es.searching import (
    bool_param,
    find,
    shard_failure,
    shard_summary,
    target_indices,
)
from tools.standins.es.sorting import parse_sort, sort_hits
from tools.standins.es.store import Index
from tools.standins.es.values import token_name

_SEARCH_KEYS = frozenset(
    {"query", "size", "from", "track_total_hits", "timeout", "_source", "sort"}
)
_DEFAULT_TRACK_TOTAL_HITS = 10_000


def _unknown_key(key: str, value: Any) -> EsError:
    if key in KNOWN_UNSUPPORTED_SEARCH_KEYS:
        return unsupported(f"search option [{key}]")
    return bad_request(f"Unknown key for a {token_name(value)} in [{key}].", "parsing_exception")


def _window(
    body: Mapping[str, Any], query: Mapping[str, str], indices: list[Index]
) -> tuple[int, int]:
    # URL parameters win over the body, as in ES.
    size = int_param(query, "size", body.get("size", 10))
    start = int_param(query, "from", body.get("from", 0))
    for name, value in (("size", size), ("from", start)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad_request(f"[{name}] parameter cannot be negative, found [{value}]")
    assert size is not None and start is not None
    for index in indices:
        limit = index.setting("index.max_result_window", 10_000)
        if start + size > limit:
            error = bad_request(
                f"Result window is too large, from + size must be less than or equal to: "
                f"[{limit}] but was [{start + size}]. See the scroll api for a more "
                "efficient way to request large data sets. This limit can be set by changing the "
                "[index.max_result_window] index level setting."
            )
            raise shard_failure(error, index.shard_list)
    return start, size


def _track_total_hits(
    body: Mapping[str, Any], query: Mapping[str, str], as_int: bool
) -> int | bool:
    raw: Any = query.get("track_total_hits", body.get("track_total_hits"))
    if isinstance(raw, str):
        raw = {"true": True, "false": False}.get(raw, raw)
    if raw is None:
        # `rest_total_hits_as_int` asks for an exact count, as ES sets it.
        return True if as_int else _DEFAULT_TRACK_TOTAL_HITS
    if isinstance(raw, bool):
        return raw
    try:
        track = int(raw)
    except (TypeError, ValueError):
        raise bad_request(
            f"Failed to parse int parameter [track_total_hits] with value [{raw}]"
        ) from None
    if as_int:
        raise bad_request(
            "[rest_total_hits_as_int] cannot be used if the tracking of total hits is not "
            f"accurate, got {track}"
        )
    return track


def _total(found: int, track: int | bool, as_int: bool) -> Any:
    if as_int:
        return found if track is not False else -1
    if track is True:
        return {"value": found, "relation": "eq"}
    if track is False:
        return None
    if found > track:
        return {"value": track, "relation": "gte"}
    return {"value": found, "relation": "eq"}


def _indices(request: web.Request) -> list[Index]:
    expression = request.match_info.get("index", "_all")
    return target_indices(runtime(request).store, expression, request.query)


async def search(request: web.Request) -> web.Response:
    """GET|POST /{index}/_search (index may be a list or a `*` pattern) and /_search."""
    started = time.monotonic()
    body = await read_json(request)
    for key, value in body.items():
        if key not in _SEARCH_KEYS:
            raise _unknown_key(key, value)
    with_source = body.get("_source", True)
    if not isinstance(with_source, bool):
        raise unsupported("_source filtering")
    query_params = request.query
    as_int = bool_param(query_params, "rest_total_hits_as_int")
    track = _track_total_hits(body, query_params, as_int)
    indices = target_indices(
        runtime(request).store, request.match_info.get("index", "_all"), query_params
    )
    query = body.get("query")
    shards, found = find(indices, query, query_params.get("routing"))
    # ES checks the window once the query is parsed, on each shard.
    start, size = _window(body, query_params, indices)
    score: float | None = 0.0 if is_filter_only(query) else 1.0
    keys = parse_sort(body["sort"]) if "sort" in body else []
    ordered = sort_hits(found, keys) if keys else [(hit, []) for hit in found]
    if keys and not any(k.field == "_score" for k in keys):
        score = None  # ES does not score hits sorted by fields
    hits = []
    for hit, sort_values in ordered[start : start + size]:
        entry: dict[str, Any] = {"_index": hit.index.name, "_id": hit.doc_id, "_score": score}
        if hit.doc.routing is not None:
            entry["_routing"] = hit.doc.routing
        if with_source:
            entry["_source"] = hit.doc.source
        if keys:
            entry["sort"] = sort_values
        hits.append(entry)
    total = _total(len(found), track, as_int)
    hits_body: dict[str, Any] = {} if total is None else {"total": total}
    hits_body.update(max_score=score if hits else None, hits=hits)
    return respond(
        request,
        {
            "took": int((time.monotonic() - started) * 1000),
            "timed_out": False,
            "_shards": shard_summary(shards),
            "hits": hits_body,
        },
    )


async def count(request: web.Request) -> web.Response:
    """GET|POST /{index}/_count."""
    body = await read_json(request)
    for key in body:
        if key != "query":
            raise bad_request(f"request does not support [{key}]", "parsing_exception")
    terminate_after = int_param(request.query, "terminate_after")
    if terminate_after is not None and terminate_after < 0:
        raise bad_request("terminateAfter must be > 0")
    indices = target_indices(
        runtime(request).store, request.match_info.get("index", "_all"), request.query
    )
    shards, found = find(indices, body.get("query"), request.query.get("routing"))
    answer: dict[str, Any] = {"count": len(found)}
    if terminate_after:
        per_shard: dict[tuple[str, int], int] = {}
        for hit in found:
            where = (hit.index.name, hit.shard.number)
            per_shard[where] = per_shard.get(where, 0) + 1
        answer["count"] = sum(min(n, terminate_after) for n in per_shard.values())
        answer["terminated_early"] = any(n >= terminate_after for n in per_shard.values())
    answer["_shards"] = shard_summary(shards)
    return respond(request, answer)


async def delete_by_query(request: web.Request) -> web.Response:
    """POST /{index}/_delete_by_query (see `dbq` for conflicts, batches, slices, throttling)."""
    started = time.monotonic()
    body = await read_json(request, required=True)
    if "query" not in body:
        raise validation_failed("query is missing")
    for key in body:
        if key not in ("query", "max_docs", "conflicts"):
            raise unsupported(f"delete_by_query option [{key}]")
    remote = [i for i in request.match_info["index"].split(",") if ":" in i]
    if remote:
        raise validation_failed(
            "Cross-cluster calls are not supported in this context but remote indices were "
            f"requested: [{', '.join(remote)}]"
        )
    options = dbq.parse_options(request.query, body)
    for index in _indices(request):
        check_active_copies(request.query.get("wait_for_active_shards"), index)
    refresh = bool_param(request.query, "refresh")
    store = runtime(request).store
    indices = target_indices(store, request.match_info["index"], request.query)
    _shards, found = find(indices, body["query"], request.query.get("routing"))
    fewest = min((i.shards for i in indices), default=1)
    status, counters = await dbq.delete_by_query(store, found, options, fewest)
    if refresh:
        for index in {hit.index.name: hit.index for hit in found}.values():
            index.refresh()
    took = int((time.monotonic() - started) * 1000)
    return respond(request, {"took": took, "timed_out": False, **counters}, status)
