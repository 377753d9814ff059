"""HTTP plumbing of the ES stand-in: shared state, responses, bodies and request parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tools.standins.es.errors import (
    EsError,
    PlainEsError,
    bad_request,
    unsupported,
    validation_failed,
)
from tools.standins.es.store import PRIMARY_TERM, Index, Store, WriteResult
from tools.standins.faults import FaultState
from tools.standins.inflight import InFlight

# What ES 8 answers to a client that asked for compatibility mode (the official client does).
COMPAT_JSON = "application/vnd.elasticsearch+json;compatible-with=8"
JSON_TYPES = frozenset({"application/json", "application/vnd.elasticsearch+json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/vnd.elasticsearch+x-ndjson"})
VERSION_TYPES = ("internal", "external", "external_gte")
# Real ES parameters the stand-in does not implement; refused rather than silently ignored.
UNSUPPORTED_PARAMS = frozenset(
    {
        "if_seq_no",
        "if_primary_term",
        "pipeline",
        "filter_path",
        "q",
        "_source",
        "_source_includes",
        "_source_excludes",
        "stored_fields",
        "scroll",
        "search_type",
        "rest_total_hits_as_int",
    }
)


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


def respond(request: web.Request, body: Any, status: int = 200) -> web.Response:
    """A JSON answer in the content type the client asked for."""
    accept = request.headers.get("Accept", "")
    content_type = COMPAT_JSON if "compatible-with" in accept else "application/json"
    return web.Response(
        body=json.dumps(body).encode(), status=status, headers={"Content-Type": content_type}
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


def forced_refresh(query: Mapping[str, str]) -> bool:
    """Parse `refresh`; True when ES would report `forced_refresh` (writes are visible at once)."""
    value = query.get("refresh")
    if value is None or value == "false":
        return False
    if value in ("", "true"):
        return True
    if value == "wait_for":
        return False
    raise bad_request(f"Unknown value for refresh: [{value}].")


def check_version_type(value: Any) -> str:
    """A known `version_type` (`internal` when absent)."""
    version_type = "internal" if value is None else str(value)
    if version_type == "force":
        raise bad_request("version type [force] may no longer be used")
    if version_type not in VERSION_TYPES:
        raise bad_request(f"No version type match [{version_type}]")
    return version_type


def versioning(
    version: Any, version_type: Any, *, create_only: bool = False
) -> tuple[int | None, str]:
    """Check a write's `version`/`version_type` like ES's request validation does."""
    version_type = check_version_type(version_type)
    if version is not None:
        try:
            version = int(version)
        except (TypeError, ValueError):
            raise bad_request(
                f"Failed to parse long parameter [version] with value [{version}]"
            ) from None
    if version_type == "internal":
        if version is not None:
            raise validation_failed(
                "internal versioning can not be used for optimistic concurrency control. "
                "Please use `if_seq_no` and `if_primary_term` instead"
            )
        return None, version_type
    if create_only:
        raise validation_failed(
            "create operations only support internal versioning. use index instead"
        )
    if version is None or version < 0:
        shown = -3 if version is None else version  # ES's Versions.MATCH_ANY
        raise validation_failed(
            f"illegal version value [{shown}] for version type [{version_type.upper()}]"
        )
    return version, version_type


def refuse_unsupported_params(query: Mapping[str, str]) -> None:
    """400 naming the first parameter the stand-in does not implement."""
    for name in query:
        if name in UNSUPPORTED_PARAMS:
            raise unsupported(f"parameter [{name}]")


def shards(total: int = 2) -> dict[str, int]:
    """The `_shards` header of a write on a one-node cluster (replicas stay unassigned)."""
    return {"total": total, "successful": 1, "failed": 0}


def write_body(result: WriteResult, index: Index, *, refreshed: bool = False) -> dict[str, Any]:
    """The answer to an applied write, as ES gives it (also a bulk item, plus `status`)."""
    body: dict[str, Any] = {
        "_index": result.index,
        "_id": result.doc_id,
        "_version": result.version,
        "result": result.result,
        "_shards": shards(index.replicas + 1),
        "_seq_no": result.seq_no,
        "_primary_term": PRIMARY_TERM,
    }
    if refreshed:
        body["forced_refresh"] = True
    return body
