"""Query DSL subset compiled, per index, into predicates over `(doc_id, doc)`.

Supported: `match_all`, `match_none`, `term`, `terms`, `range`, `ids`, `exists`,
`constant_score` and `bool` (`must`, `filter`, `must_not`, `should`, `minimum_should_match`).
Values compare by the field's mapped type: numbers numerically (numeric strings included),
booleans and dates by value, everything else by its exact text. Text fields are NOT analysed:
a `term` on a `text` field matches the whole original value, where real ES would match one
lower-cased token. A field without a mapping matches nothing, as in ES. The metadata fields
answer as ES's do: `_id`, `_index` (with `*` patterns), `_routing` and `_seq_no` can be
queried, `_version` only with `exists`, and `_source` not at all.
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.standins.es.errors import EsError, unsupported
from tools.standins.es.mapping import field_type, lookup_field
from tools.standins.es.shard import Doc
from tools.standins.es.values import comparable, values_at

Predicate = Callable[[str, Doc], bool]
# Queries real ES has that the stand-in does not: refused, never silently ignored.
KNOWN_UNSUPPORTED_QUERIES = frozenset(
    {
        "match",
        "match_phrase",
        "match_phrase_prefix",
        "match_bool_prefix",
        "multi_match",
        "query_string",
        "simple_query_string",
        "prefix",
        "wildcard",
        "regexp",
        "fuzzy",
        "nested",
        "knn",
        "script",
        "script_score",
        "function_score",
        "dis_max",
        "boosting",
        "more_like_this",
        "terms_set",
        "has_child",
        "has_parent",
        "geo_distance",
        "geo_bounding_box",
        "geo_shape",
        "intervals",
        "combined_fields",
    }
)
_RANGE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _parsing(reason: str) -> EsError:
    return EsError(400, "parsing_exception", reason)


def _single_field(kind: str, body: object) -> tuple[str, Any]:
    if not isinstance(body, dict):
        raise _parsing(f"[{kind}] query malformed, no start_object after query name")
    fields = [key for key in body if key not in ("boost", "_name")]
    if len(fields) != 1:
        if not fields:
            raise _parsing(f"[{kind}] query malformed, no field specified")
        raise _parsing(
            f"[{kind}] query doesn't support multiple fields, found [{fields[0]}] and [{fields[1]}]"
        )
    return fields[0], body[fields[0]]


@dataclass(frozen=True)
class Target:
    """What a query is compiled against: one index's name, mappings and limits."""

    index: str = ""
    mappings: dict[str, Any] | None = None
    index_uuid: str = "_na_"
    max_terms_count: int = 65_536
    max_result_window: int = 10_000


def _shard_error(target: Target, reason: str) -> EsError:
    return EsError(
        400, "query_shard_exception", reason, index_uuid=target.index_uuid, index=target.index
    )


def _metadata_values(target: Target, name: str, doc_id: str, doc: Doc) -> list[Any]:
    values: dict[str, list[Any]] = {
        "_id": [doc_id],
        "_index": [target.index],
        "_routing": [] if doc.routing is None else [doc.routing],
        "_seq_no": [doc.seq_no],
        "_version": [doc.version],
    }
    return values[name]


# Metadata fields a query may name, with the type their values compare as.
_METADATA_TYPES = {"_id": "keyword", "_index": "keyword", "_routing": "keyword", "_seq_no": "long"}
_NOT_SEARCHABLE = {"_source": "The _source field is not searchable"}
_TERM_ONLY_EXISTS = {"_version": "The _version field is not searchable"}


class _Compiler:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.mappings = target.mappings or {}

    def field(self, path: str) -> tuple[Callable[[str, Doc], list[Any]], str | None]:
        """How to read a field's values, and its type (None: unmapped, matches nothing)."""
        if path in _METADATA_TYPES:
            return (
                lambda doc_id, doc: _metadata_values(self.target, path, doc_id, doc)
            ), _METADATA_TYPES[path]
        source_path, spec = lookup_field(self.mappings, path)
        parts = source_path.split(".")
        ftype = None if spec is None else field_type(spec)
        return (lambda _id, doc: values_at(doc.source, parts)), ftype

    def _searchable(self, path: str, query: str) -> None:
        reason = _NOT_SEARCHABLE.get(path) or (
            _TERM_ONLY_EXISTS.get(path) if query != "exists" else None
        )
        if reason is not None:
            raise _shard_error(self.target, reason)

    def compile(self, query: object) -> Predicate:
        if query is None or query == {}:
            return lambda _id, _doc: True
        if not isinstance(query, dict) or len(query) != 1:
            raise _parsing("a query must be an object with exactly one query name")
        ((kind, body),) = query.items()
        method = getattr(self, f"_q_{kind}", None)
        if method is None:
            if kind in KNOWN_UNSUPPORTED_QUERIES:
                raise unsupported(f"query [{kind}]")
            raise _parsing(f"unknown query [{kind}]")
        predicate: Predicate = method(body)
        return predicate

    def _q_match_all(self, body: object) -> Predicate:
        return lambda _id, _doc: True

    def _q_match_none(self, body: object) -> Predicate:
        return lambda _id, _doc: False

    def _q_ids(self, body: object) -> Predicate:
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, list):
            raise _parsing("[ids] query requires a [values] array")
        if self.target.mappings is not None and len(values) > self.target.max_result_window:
            raise _shard_error(
                self.target,
                "failed to create query: Too many ids specified, allowed max result window is "
                f"[{self.target.max_result_window}]",
            )
        wanted = {str(v) for v in values}
        return lambda doc_id, _doc: doc_id in wanted

    def _q_term(self, body: object) -> Predicate:
        path, spec = _single_field("term", body)
        insensitive = False
        if isinstance(spec, dict):
            unknown = set(spec) - {"value", "boost", "case_insensitive", "_name"}
            if unknown or "value" not in spec:
                raise _parsing(f"[term] query does not support [{sorted(unknown or {'value'})[0]}]")
            insensitive, spec = bool(spec.get("case_insensitive", False)), spec["value"]
        if isinstance(spec, list):
            raise _parsing("[term] query does not support array of values")
        return self._equals(path, [spec], insensitive, "term")

    def _q_terms(self, body: object) -> Predicate:
        path, values = _single_field("terms", body)
        if isinstance(values, dict):
            raise unsupported("terms lookup")
        if not isinstance(values, list):
            raise _parsing("[terms] query requires an array of values")
        if self.target.mappings is not None and len(values) > self.target.max_terms_count:
            raise _shard_error(
                self.target,
                f"failed to create query: The number of terms [{len(values)}] used in the Terms "
                f"Query request has exceeded the allowed maximum of "
                f"[{self.target.max_terms_count}]. This maximum can be set by changing the "
                "[index.max_terms_count] index level setting.",
            )
        return self._equals(path, values, False, "terms")

    def _equals(self, path: str, wanted: list[Any], insensitive: bool, query: str) -> Predicate:
        self._searchable(path, query)
        if path == "_index":
            patterns = [str(v).lower() if insensitive else str(v) for v in wanted]
            name = self.target.index.lower() if insensitive else self.target.index
            hit = any(fnmatch.fnmatchcase(name, p) for p in patterns)
            return lambda _id, _doc: hit
        read, ftype = self.field(path)
        if ftype is None:
            return lambda _id, _doc: False
        keys = {comparable(v, ftype) for v in wanted} - {None}
        if insensitive:
            keys = {k.lower() if isinstance(k, str) else k for k in keys}

        def matches(doc_id: str, doc: Doc) -> bool:
            for value in read(doc_id, doc):
                key = comparable(value, ftype)
                if insensitive and isinstance(key, str):
                    key = key.lower()
                if key is not None and key in keys:
                    return True
            return False

        return matches

    def _q_range(self, body: object) -> Predicate:
        path, bounds = _single_field("range", body)
        if not isinstance(bounds, dict):
            raise _parsing(f"[range] query malformed for field [{path}]")
        unknown = set(bounds) - set(_RANGE_OPS) - {"boost", "_name"}
        if unknown:
            raise unsupported(f"range option [{sorted(unknown)[0]}]")
        self._searchable(path, "range")
        if path in ("_id", "_index", "_version"):
            raise _shard_error(
                self.target,
                f"failed to create query: Field [{path}] of type [{path}] does not support range "
                "queries",
            )
        read, ftype = self.field(path)
        if ftype is None:
            return lambda _id, _doc: False
        checks = []
        for op, raw in bounds.items():
            if op not in _RANGE_OPS or raw is None:
                continue
            if isinstance(raw, str) and raw.startswith("now"):
                raise unsupported("date math in range queries")
            bound = comparable(raw, ftype)
            if bound is None:
                raise _shard_error(
                    self.target,
                    f"failed to create query: cannot compare [{path}] of type [{ftype}] "
                    f"with [{raw}]",
                )
            checks.append((_RANGE_OPS[op], bound))

        def matches(doc_id: str, doc: Doc) -> bool:
            for value in read(doc_id, doc):
                key = comparable(value, ftype)
                if key is not None and all(compare(key, bound) for compare, bound in checks):
                    return True
            return False

        return matches

    def _q_exists(self, body: object) -> Predicate:
        path = body.get("field") if isinstance(body, dict) else None
        if not isinstance(path, str):
            raise _parsing("[exists] must be provided with a [field]")
        self._searchable(path, "exists")
        if path in ("_id", "_index", "_seq_no", "_version"):
            return lambda _id, _doc: True
        read, ftype = self.field(path)
        if ftype is None:
            return lambda _id, _doc: False
        return lambda doc_id, doc: bool(read(doc_id, doc))

    def _q_constant_score(self, body: object) -> Predicate:
        if not isinstance(body, dict) or "filter" not in body:
            raise _parsing("[constant_score] requires a 'filter' element")
        return self.compile(body["filter"])

    def _q_bool(self, body: object) -> Predicate:
        if not isinstance(body, dict):
            raise _parsing("[bool] query malformed")
        unknown = set(body) - {
            "must",
            "filter",
            "must_not",
            "should",
            "minimum_should_match",
            "boost",
            "_name",
        }
        if unknown:
            raise _parsing(f"[bool] query does not support [{sorted(unknown)[0]}]")

        def clauses(name: str) -> list[Predicate]:
            value = body.get(name, [])
            return [self.compile(item) for item in (value if isinstance(value, list) else [value])]

        required = clauses("must") + clauses("filter")
        excluded, optional = clauses("must_not"), clauses("should")
        minimum = body.get("minimum_should_match", 0 if required else 1 if optional else 0)
        try:
            minimum = int(minimum)
        except (TypeError, ValueError):
            raise unsupported(f"minimum_should_match [{minimum}]") from None

        def matches(doc_id: str, doc: Doc) -> bool:
            if not all(p(doc_id, doc) for p in required):
                return False
            if any(p(doc_id, doc) for p in excluded):
                return False
            return sum(1 for p in optional if p(doc_id, doc)) >= minimum

        return matches


def check_query(query: object) -> None:
    """Refuse a query ES could not parse (before any index is looked at)."""
    _Compiler(Target()).compile(query)


def compile_query(query: object, target: Target) -> Predicate:
    """A predicate for `query` over one index's documents; 400 for what it cannot run."""
    return _Compiler(target).compile(query)


def is_filter_only(query: object) -> bool:
    """Whether the query only filters, so ES would score its hits 0.0."""
    if not isinstance(query, dict) or len(query) != 1:
        return False
    ((kind, body),) = query.items()
    if kind == "constant_score":
        return False
    return kind == "bool" and isinstance(body, dict) and not (set(body) & {"must", "should"})
