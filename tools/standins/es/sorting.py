"""`sort` in a search: by fields (keyword, numeric, date, boolean), `_doc` or `_score`.

As in ES: `asc` by default (`desc` for `_score`), the smallest value of a multi-valued field
sorts it ascending and the largest descending, documents without a value go last unless
`missing: _first`, and each hit carries its `sort` values (`_score` becomes null). Sorting a
`text` field or a field no index maps is refused as ES refuses it; `unmapped_type` lets an
unmapped field sort as missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tools.standins.es.errors import EsError, bad_request, unsupported
from tools.standins.es.mapping import FLOAT_LIMITS, NUMERIC, field_type, lookup_field
from tools.standins.es.searching import Hit, shard_failure
from tools.standins.es.values import comparable, values_at

_OPTIONS = frozenset({"order", "missing", "unmapped_type"})
_SORTABLE = NUMERIC | {"keyword", "constant_keyword", "date", "date_nanos", "boolean"}


@dataclass(frozen=True)
class SortKey:
    """One sort clause."""

    field: str
    descending: bool
    missing_first: bool
    unmapped_type: str | None


def parse_sort(raw: Any) -> list[SortKey]:
    """The sort clauses of a request; 400 for a shape ES would not parse."""
    clauses = raw if isinstance(raw, list) else [raw]
    keys: list[SortKey] = []
    for clause in clauses:
        options: dict[str, Any]
        if isinstance(clause, str):
            name, options = clause, {}
        elif isinstance(clause, dict) and len(clause) == 1:
            ((name, value),) = clause.items()
            options = {"order": value} if isinstance(value, str) else value
            if not isinstance(options, dict):
                raise bad_request(f"malformed sort format for [{name}]", "parsing_exception")
        else:
            raise bad_request("malformed sort format", "parsing_exception")
        extra = set(options) - _OPTIONS
        if extra or (name.startswith("_") and name not in ("_doc", "_score")):
            raise unsupported(f"sort option {sorted(extra) or [name]}")
        order = options.get("order", "desc" if name == "_score" else "asc")
        if order not in ("asc", "desc"):
            raise bad_request(f"Unknown SortOrder [{order}]")
        missing = options.get("missing", "_last")
        if missing not in ("_last", "_first"):
            raise unsupported("sort [missing] values other than _first and _last")
        keys.append(
            SortKey(name, order == "desc", missing == "_first", options.get("unmapped_type"))
        )
    return keys


def _field_type(key: SortKey, hit: Hit) -> str | None:
    _path, spec = lookup_field(hit.index.mappings, key.field)
    if spec is None:
        if key.unmapped_type is None:
            error = EsError(
                400,
                "query_shard_exception",
                f"No mapping found for [{key.field}] in order to sort on",
                index_uuid=hit.index.uuid,
                index=hit.index.name,
            )
            raise shard_failure(error, hit.index.shard_list)
        return None
    ftype = field_type(spec)
    if ftype not in _SORTABLE:
        reason = (
            "Text fields are not optimised for operations that require per-document field data "
            "like aggregations and sorting, so these operations are disabled by default. Please "
            f"use a keyword field instead. Alternatively, set fielddata=true on [{key.field}] in "
            "order to load field data by uninverting the inverted index. Note that this can use "
            "significant memory."
            if ftype == "text"
            else f"the ES stand-in does not support sorting on a field of type [{ftype}]"
        )
        raise shard_failure(bad_request(reason), hit.index.shard_list)
    return ftype


def _value(key: SortKey, hit: Hit) -> Any:
    ftype = _field_type(key, hit)
    if ftype is None:
        return None
    path, _spec = lookup_field(hit.index.mappings, key.field)
    values = [comparable(v, ftype) for v in values_at(hit.doc.source, path.split("."))]
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if key.descending else min(present)


def _shown(value: Any, ftype: str | None) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return float(value) if ftype in FLOAT_LIMITS else int(value)
    return value


def sort_hits(hits: list[Hit], keys: list[SortKey]) -> list[tuple[Hit, list[Any]]]:
    """The hits in sort order, each with its `sort` values."""
    rows = []
    for position, hit in enumerate(hits):
        values: list[Any] = []
        for key in keys:
            if key.field == "_doc":
                values.append(position)
            elif key.field == "_score":
                values.append(1.0)
            else:
                values.append(_value(key, hit))
        rows.append((hit, values))
    for n in reversed(range(len(keys))):
        key = keys[n]
        present = [r for r in rows if r[1][n] is not None]
        absent = [r for r in rows if r[1][n] is None]
        present.sort(key=lambda r: r[1][n], reverse=key.descending)
        rows = absent + present if key.missing_first else present + absent
    types = [
        None if k.field in ("_doc", "_score") or not hits else _type_or_none(k, hits[0])
        for k in keys
    ]
    return [
        (hit, [_shown(v, t) for v, t in zip(values, types, strict=True)]) for hit, values in rows
    ]


def _type_or_none(key: SortKey, hit: Hit) -> str | None:
    _path, spec = lookup_field(hit.index.mappings, key.field)
    return None if spec is None else field_type(spec)
