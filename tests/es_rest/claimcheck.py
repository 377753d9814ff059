"""Whether a YAML test stays inside the stand-in's claim (tools/standins/es/claim.py).

A test is outside when a `do` of its setup, body or teardown calls an API the claim does not
list, passes a parameter the API's claim does not list, or sends a body that uses what the
stand-in refuses: a query, search option, index setting, mapping parameter or bulk action
outside the claim. A test that expects deprecation warnings is outside too (the stand-in
emits none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.es_rest.suite import Section, SuiteFile
from tools.standins.es.claim import (
    API_BY_NAME,
    BULK_ACTIONS,
    BULK_METADATA,
    CLAIMED_SETTINGS,
    GLOBAL_PARAMS,
    KNOWN_UNSUPPORTED_QUERIES,
    KNOWN_UNSUPPORTED_SEARCH_KEYS,
    MAPPING_ROOT,
)

_CLIENT_ARGS = frozenset({"body", "ignore"})
_RANGE_OPTIONS = frozenset({"gt", "gte", "lt", "lte", "boost", "_name"})
_SEARCHES = frozenset({"search", "count", "delete_by_query"})
_UNSUPPORTED_FIELD_KEYS = frozenset({"copy_to", "runtime", "subobjects"})


def _queries(query: Any) -> Iterator[str]:
    """Problems of a query tree (one per unclaimed part)."""
    if not isinstance(query, dict) or len(query) != 1:
        return
    ((kind, body),) = query.items()
    if kind in KNOWN_UNSUPPORTED_QUERIES:
        yield f"query [{kind}]"
    elif kind == "bool" and isinstance(body, dict):
        for clause in ("must", "filter", "should", "must_not"):
            value = body.get(clause, [])
            for item in value if isinstance(value, list) else [value]:
                yield from _queries(item)
    elif kind == "constant_score" and isinstance(body, dict):
        yield from _queries(body.get("filter"))
    elif kind == "terms" and isinstance(body, dict):
        if any(isinstance(v, dict) for k, v in body.items() if k not in ("boost", "_name")):
            yield "terms lookup"
    elif kind == "range" and isinstance(body, dict):
        for bounds in body.values():
            if isinstance(bounds, dict):
                extra = set(bounds) - _RANGE_OPTIONS
                if extra:
                    yield f"range options {sorted(extra)}"
                if any(isinstance(v, str) and v.startswith("now") for v in bounds.values()):
                    yield "date math"


def _sort(raw: Any) -> Iterator[str]:
    for clause in raw if isinstance(raw, list) else [] if raw is None else [raw]:
        name, options = (clause, {}) if isinstance(clause, str) else next(iter(clause.items()))
        options = options if isinstance(options, dict) else {"order": options}
        extra = set(options) - {"order", "missing", "unmapped_type"}
        if extra or (name.startswith("_") and name not in ("_doc", "_score")):
            yield f"sort {sorted(extra) or [name]}"
        if options.get("missing", "_last") not in ("_last", "_first"):
            yield "sort missing value"


def _flat_settings(settings: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(settings, dict):
        for key, value in settings.items():
            yield from _flat_settings(value, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix if prefix.startswith("index.") else f"index.{prefix}"


def _mapping(mappings: Any) -> Iterator[str]:
    if not isinstance(mappings, dict):
        return
    if list(mappings) == ["_doc"]:
        mappings = mappings["_doc"]
        if not isinstance(mappings, dict):
            return
    for key, value in mappings.items():
        if key not in MAPPING_ROOT and value not in ({}, [], None):
            yield f"mapping [{key}]"
    yield from _fields(mappings.get("properties"))


def _fields(properties: Any) -> Iterator[str]:
    if not isinstance(properties, dict):
        return
    for spec in properties.values():
        if isinstance(spec, dict):
            for key in _UNSUPPORTED_FIELD_KEYS & set(spec):
                yield f"mapping parameter [{key}]"
            yield from _fields(spec.get("properties"))
            yield from _fields(spec.get("fields"))


def _bulk(body: Any) -> Iterator[str]:
    lines = body if isinstance(body, list) else str(body).splitlines()
    parsed = []
    for line in lines:
        if isinstance(line, str):
            try:
                parsed.append(json.loads(line) if line.strip() else None)
            except ValueError:
                parsed.append(None)
        else:
            parsed.append(line)
    for item in parsed:
        if isinstance(item, dict) and len(item) == 1:
            ((action, meta),) = item.items()
            if action == "update":
                yield "bulk action [update]"
            if action in BULK_ACTIONS and isinstance(meta, dict):
                for key in sorted(set(meta) - set(BULK_METADATA)):
                    yield f"bulk metadata [{key}]"


def _body(api: str, body: Any) -> Iterator[str]:
    if body is None:
        return
    if api in _SEARCHES and isinstance(body, dict):
        for key in sorted(set(body) & KNOWN_UNSUPPORTED_SEARCH_KEYS):
            yield f"{api} body [{key}]"
        if not isinstance(body.get("_source", True), bool):
            yield "_source filtering"
        yield from _sort(body.get("sort"))
        yield from _queries(body.get("query"))
    elif api == "indices.create" and isinstance(body, dict):
        if body.get("aliases"):
            yield "aliases"
        for key in _flat_settings(body.get("settings", {})):
            if key not in CLAIMED_SETTINGS:
                yield f"index setting [{key}]"
        yield from _mapping(body.get("mappings"))
    elif api == "indices.put_mapping":
        yield from _mapping(body)
    elif api == "bulk":
        yield from _bulk(body)


def _do(step: dict[str, Any]) -> Iterator[str]:
    if step.get("warnings") or step.get("warnings_regex"):
        yield "expects deprecation warnings (the stand-in emits none)"
    for name, args in step.items():
        if name in ("catch", "headers", "warnings", "allowed_warnings", "warnings_regex"):
            continue
        if name in ("allowed_warnings_regex", "node_selector"):
            continue
        api = API_BY_NAME.get(name)
        if api is None:
            yield f"API [{name}]"
            continue
        args = args or {}
        parts = {p for _, path in api.endpoints for p in re.findall(r"\{(\w+)\}", path)}
        for param in sorted(set(args) - parts - _CLIENT_ARGS - api.params - GLOBAL_PARAMS):
            yield f"parameter [{param}] of [{name}]"
        if any("<" in str(args.get(part, "")) for part in parts):
            yield "date math in index names"
        yield from _body(name, args.get("body"))


def outside_claim(file: SuiteFile, test: Section) -> list[str]:
    """What takes the test outside the claim (empty: inside)."""
    found: list[str] = []
    for section in (file.setup, test, file.teardown):
        for kind, body in section.steps if section is not None else []:
            if kind == "do" and isinstance(body, dict):
                found.extend(p for p in _do(body) if p not in found)
    return found
