"""HTTP plumbing of the ES stand-in: shared state, responses, bodies and request parameters."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tools.standins.es.claim import GLOBAL_PARAMS, Api
from tools.standins.es.errors import (
    EsError,
    PlainEsError,
    bad_request,
    unsupported,
    validation_failed,
)
from tools.standins.es.filtering import filter_path
from tools.standins.es.shard import PRIMARY_TERM, Cas, WriteResult
from tools.standins.es.store import Index, Store
from tools.standins.faults import FaultState
from tools.standins.inflight import InFlight

# What ES 8 answers to a client that asked for compatibility mode (the official client does).
COMPAT_JSON = "application/vnd.elasticsearch+json;compatible-with=8"
JSON_TYPES = frozenset({"application/json", "application/vnd.elasticsearch+json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/vnd.elasticsearch+x-ndjson"})
VERSION_TYPES = ("internal", "external", "external_gte")


@dataclass
class Runtime:
    """Everything the handlers share: data, faults and request counters."""

    store: Store
    faults: FaultState
    requests: int = 0
    in_flight: InFlight = field(default_factory=InFlight)

    def stats(self) -> dict[str, Any]:
        """Counters for the control API's `/stats`."""
        return {
            "requests": self.requests,
            "applied": dict(sorted(self.store.applied.items())),
            **self.in_flight.stats(),
        }

    def reset(self) -> None:
        """Drop every index and zero the counters."""
        self.store.reset()
        self.requests = 0
        self.in_flight.reset()


RUNTIME = web.AppKey("runtime", Runtime)


def runtime(request: web.Request) -> Runtime:
    """The stand-in's shared state."""
    return request.app[RUNTIME]


def check_params(api: Api, request: web.Request) -> None:
    """400 naming the first query parameter the API does not take here."""
    for name in request.query:
        if name not in api.params and name not in GLOBAL_PARAMS:
            raise unsupported(f"parameter [{name}] of [{api.name}]")


def respond(request: web.Request, body: Any, status: int = 200) -> web.Response:
    """A JSON answer in the content type the client asked for (`filter_path`, `pretty`)."""
    accept = request.headers.get("Accept", "")
    content_type = COMPAT_JSON if "compatible-with" in accept else "application/json"
    paths = request.query.get("filter_path")
    if paths:
        body = filter_path(body, paths.split(","))
    indent = 2 if "pretty" in request.query and request.query["pretty"] != "false" else None
    return web.Response(
        body=json.dumps(body, indent=indent).encode(),
        status=status,
        headers={"Content-Type": content_type},
    )


def error_response(request: web.Request, error: EsError) -> web.Response:
    """An ES error answer."""
    return respond(request, error.body(), error.status)


def check_content_type(request: web.Request, allowed: frozenset[str]) -> None:
    """406 for a body in a content type ES would not parse, as ES answers it."""
    if request.content_type not in allowed:
        shown = request.headers.get("Content-Type", "")
        raise PlainEsError(406, f"Content-Type header [{shown}] is not supported")


async def read_json(request: web.Request, *, required: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; `{}` when empty and not required."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise validation_failed("request body is required")
        return {}
    check_content_type(request, JSON_TYPES)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise bad_request(
            f"Failed to parse request body: {exc}", "x_content_parse_exception"
        ) from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", "x_content_parse_exception")
    return body


def int_param(query: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    """An integer query parameter."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"Failed to parse int parameter [{name}] with value [{raw}]") from None


def refresh_policy(query: Mapping[str, str]) -> str:
    """`refresh` as ES reads it: none, immediate (`true` or empty) or wait_for."""
    value = query.get("refresh")
    if value is None or value == "false":
        return "none"
    if value in ("", "true"):
        return "immediate"
    if value == "wait_for":
        return "wait_for"
    raise bad_request(f"Unknown value for refresh: [{value}].")


async def apply_refresh(policy: str, store: Store, results: Iterable[WriteResult]) -> bool:
    """Refresh what the writes touched as `policy` says; True if a refresh was forced."""
    touched = {(r.index, r.shard): r.refresh_ticket for r in results}
    forced = False
    for (name, number), ticket in touched.items():
        index = store.indices.get(name)
        if index is None:
            continue
        shard = index.shard_list[number]
        if policy == "immediate":
            shard.refresh()
            forced = True
        elif policy == "wait_for":
            forced = await shard.wait_visible(ticket) or forced
    return forced


def check_active_copies(raw: str | None, index: Index, shard: int = 0) -> None:
    """`wait_for_active_shards` on one node: more than one active copy is never reached.

    ES would wait `timeout` (1 minute) and then fail with 503; nothing changes here, so the
    stand-in fails at once.
    """
    needed = copies_needed(raw, index)
    if needed > 1:
        raise EsError(
            503,
            "unavailable_shards_exception",
            f"[{index.name}][{shard}] Not enough active copies to meet shard count of [{raw}] "
            f"(have 1, needed {needed}).",
        )


def copies_needed(raw: str | None, index: Index) -> int:
    """How many active copies of each shard `wait_for_active_shards` asks for."""
    if raw is None or raw == "index-setting":
        return 1
    if raw == "all":
        return index.replicas + 1
    try:
        needed = int(raw)
    except ValueError:
        raise bad_request(f"Invalid wait_for_active_shards value [{raw}]") from None
    if needed < 0 or needed > index.replicas + 1:
        raise bad_request(
            f"wait_for_active_shards [{raw}] must be less than or equal to the number of copies "
            f"of each shard [{index.replicas + 1}]"
        )
    return needed


def check_version_type(value: Any) -> str:
    """A known `version_type` (`internal` when absent)."""
    version_type = "internal" if value is None else str(value)
    if version_type == "force":
        raise bad_request("version type [force] may no longer be used")
    if version_type not in VERSION_TYPES:
        raise bad_request(f"No version type match [{version_type}]")
    return version_type


def _long(name: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"Failed to parse long parameter [{name}] with value [{value}]") from None


def write_cas(
    source: Mapping[str, Any], *, create_only: bool = False, doc_id: str | None = ""
) -> Cas:
    """A write's `version`/`version_type`/`if_seq_no`/`if_primary_term`, checked as ES does."""
    version_type = check_version_type(source.get("version_type"))
    version = _long("version", source.get("version"))
    if_seq_no = _long("if_seq_no", source.get("if_seq_no"))
    if_primary_term = _long("if_primary_term", source.get("if_primary_term"))
    if create_only:
        # ES's IndexRequest checks a create's versioning first and stops at the first problem.
        if version_type != "internal":
            raise validation_failed(
                "create operations only support internal versioning. use index instead"
            )
        if version is not None:
            raise validation_failed(
                "create operations do not support explicit versions. use index instead"
            )
        if if_seq_no is not None or if_primary_term is not None:
            raise validation_failed(
                "create operations do not support compare and set. use index instead"
            )
    problems = []
    if doc_id is None and (version_type != "internal" or version is not None):
        problems.append("an id must be provided if version type or value are set")
    if version_type != "internal" and (version is None or version < 0):
        shown = -3 if version is None else version  # ES's Versions.MATCH_ANY
        problems.append(
            f"illegal version value [{shown}] for version type [{version_type.upper()}]"
        )
    if version_type == "internal" and version is not None:
        problems.append(
            "internal versioning can not be used for optimistic concurrency control. "
            "Please use `if_seq_no` and `if_primary_term` instead"
        )
    if if_seq_no is not None and (version_type != "internal" or version is not None):
        problems.append("compare and write operations can not use versioning")
    if if_seq_no is not None and if_primary_term is None:
        problems.append("ifSeqNo is set, but primary term is [0]")
    if if_seq_no is None and if_primary_term is not None:
        problems.append(f"ifSeqNo is unassigned, but primary term is [{if_primary_term}]")
    if problems:
        raise validation_failed(*problems)
    return Cas(version, version_type, if_seq_no, if_primary_term)


def shards_header(index: Index) -> dict[str, int]:
    """The `_shards` header of a write on a one-node cluster (replicas stay unassigned)."""
    return {"total": index.replicas + 1, "successful": 1, "failed": 0}


def write_body(result: WriteResult, index: Index, *, forced: bool = False) -> dict[str, Any]:
    """The answer to an applied write, as ES gives it (also a bulk item, plus `status`)."""
    body: dict[str, Any] = {
        "_index": result.index,
        "_id": result.doc_id,
        "_version": result.version,
        "result": result.result,
        "_shards": shards_header(index),
        "_seq_no": result.seq_no,
        "_primary_term": PRIMARY_TERM,
    }
    if forced:
        body["forced_refresh"] = True
    return body
