"""What the Elasticsearch stand-in claims to do as Elasticsearch 8 does: declared once.

The stand-in serves exactly these APIs (by the names of Elasticsearch's REST API
specification), refuses every other query parameter with a 400 that names it, and answers
the rest as Elasticsearch 8 does; its module docstring and the README list the same claim
(`claim_lines`, kept equal by tests/unit/test_docs.py). The YAML REST test runner
(tests/es_rest) reads it too: a test that uses an API, a parameter, a query, a body key or an
index setting outside it is counted and listed as outside the claim; every test inside it must
pass against the stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.standins.es.query import KNOWN_UNSUPPORTED_QUERIES
from tools.standins.es.settings import CLAIMED_SETTINGS

# The version the stand-in reports: it answers as the last 8.x line does. A YAML test's
# `skip: version` ranges and the synthetic `gte_vX` cluster features are judged against it.
VERSION = "8.19.0"
# Named cluster features whose behaviour the stand-in implements (GET /_cluster/state
# ?filter_path=nodes_features answers them); tests that require others are outside the claim.
CLUSTER_FEATURES = (
    "bulk_auto_id",
    "ids_query_limit_max_ids",
    "mapper.unknown_field_mapping_update_error_message",
)
# Accepted on every API.
GLOBAL_PARAMS = frozenset({"filter_path", "pretty"})
_INDEX_OPTIONS = frozenset({"ignore_unavailable", "allow_no_indices"})
_WRITE = frozenset({"refresh", "routing", "timeout", "wait_for_active_shards"})
_VERSIONED = frozenset({"version", "version_type"})
_CAS = frozenset({"if_seq_no", "if_primary_term"})
_READ = frozenset({"routing", "realtime", "refresh", "version", "version_type", "stored_fields"})


@dataclass(frozen=True)
class Api:
    """One API: its endpoints (methods, path template), its parameters, its body."""

    name: str
    endpoints: tuple[tuple[tuple[str, ...], str], ...]
    params: frozenset[str] = frozenset()
    body: str = "none"  # none, optional, required (ndjson for bulk)

    def line(self) -> str:
        """How the docstring and the README list it."""
        where = ", ".join(f"{'/'.join(m)} {path}" for m, path in self.endpoints)
        params = ", ".join(sorted(self.params)) or "none"
        return f"- `{self.name}` ({where}): {params}"


_GET, _HEAD, _PUT, _POST, _DELETE = ("GET",), ("HEAD",), ("PUT",), ("POST",), ("DELETE",)
APIS: tuple[Api, ...] = (
    Api("info", ((_GET, "/"),)),
    Api("ping", ((_HEAD, "/"),)),
    Api(
        "cluster.health",
        ((_GET, "/_cluster/health"), (_GET, "/_cluster/health/{index}")),
        frozenset(
            {
                "level",
                "timeout",
                "wait_for_status",
                "wait_for_active_shards",
                "wait_for_no_relocating_shards",
                "wait_for_no_initializing_shards",
                "wait_for_nodes",
            }
        ),
    ),
    Api(
        "cat.indices",
        ((_GET, "/_cat/indices"), (_GET, "/_cat/indices/{index}")),
        frozenset({"format", "h", "health", "s", "v"}),
    ),
    Api(
        "indices.create",
        ((_PUT, "/{index}"),),
        frozenset({"timeout", "master_timeout", "wait_for_active_shards"}),
        "optional",
    ),
    Api("indices.get", ((_GET, "/{index}"),), _INDEX_OPTIONS),
    Api("indices.exists", ((_HEAD, "/{index}"),), _INDEX_OPTIONS),
    Api(
        "indices.delete",
        ((_DELETE, "/{index}"),),
        _INDEX_OPTIONS | {"timeout", "master_timeout"},
    ),
    Api(
        "indices.get_mapping",
        ((_GET, "/_mapping"), (_GET, "/{index}/_mapping")),
        _INDEX_OPTIONS,
    ),
    Api(
        "indices.put_mapping",
        ((("PUT", "POST"), "/{index}/_mapping"),),
        frozenset({"timeout", "master_timeout"}),
        "required",
    ),
    Api(
        "indices.get_settings",
        ((_GET, "/_settings"), (_GET, "/{index}/_settings")),
        _INDEX_OPTIONS | {"flat_settings"},
    ),
    Api(
        "indices.refresh",
        ((("POST", "GET"), "/_refresh"), (("POST", "GET"), "/{index}/_refresh")),
        _INDEX_OPTIONS,
    ),
    Api(
        "index",
        ((("PUT", "POST"), "/{index}/_doc/{id}"), (_POST, "/{index}/_doc")),
        _WRITE | _VERSIONED | _CAS | {"op_type"},
        "required",
    ),
    Api(
        "create",
        ((("PUT", "POST"), "/{index}/_create/{id}"),),
        _WRITE | _VERSIONED,
        "required",
    ),
    Api("get", ((_GET, "/{index}/_doc/{id}"),), _READ),
    Api("exists", ((_HEAD, "/{index}/_doc/{id}"),), _READ),
    Api("delete", ((_DELETE, "/{index}/_doc/{id}"),), _WRITE | _VERSIONED | _CAS),
    Api(
        "bulk",
        ((("POST", "PUT"), "/_bulk"), (("POST", "PUT"), "/{index}/_bulk")),
        _WRITE,
        "required",
    ),
    Api(
        "search",
        ((("POST", "GET"), "/_search"), (("POST", "GET"), "/{index}/_search")),
        _INDEX_OPTIONS
        | {"from", "size", "routing", "timeout", "track_total_hits", "rest_total_hits_as_int"},
        "optional",
    ),
    Api(
        "count",
        ((("POST", "GET"), "/_count"), (("POST", "GET"), "/{index}/_count")),
        _INDEX_OPTIONS | {"routing", "terminate_after"},
        "optional",
    ),
    Api(
        "delete_by_query",
        ((_POST, "/{index}/_delete_by_query"),),
        _INDEX_OPTIONS
        | {
            "conflicts",
            "max_docs",
            "refresh",
            "requests_per_second",
            "routing",
            "scroll_size",
            "slices",
            "timeout",
            "wait_for_active_shards",
        },
        "required",
    ),
)
API_BY_NAME = {api.name: api for api in APIS}

QUERIES = (
    "bool",
    "constant_score",
    "exists",
    "ids",
    "match_all",
    "match_none",
    "range",
    "term",
    "terms",
)
# Body keys of search-like requests the stand-in implements; KNOWN_UNSUPPORTED_SEARCH_KEYS
# are real ones it refuses (a test using them is outside the claim).
SEARCH_BODY = (
    "_source (true/false)",
    "from",
    "query",
    "size",
    "sort (fields, _doc, _score; order, missing, unmapped_type)",
    "timeout",
    "track_total_hits",
)
COUNT_BODY = ("query",)
DELETE_BY_QUERY_BODY = ("conflicts", "max_docs", "query")
KNOWN_UNSUPPORTED_SEARCH_KEYS = frozenset(
    {
        "aggs",
        "aggregations",
        "collapse",
        "docvalue_fields",
        "explain",
        "ext",
        "fields",
        "highlight",
        "indices_boost",
        "knn",
        "min_score",
        "pit",
        "post_filter",
        "profile",
        "rank",
        "rescore",
        "retriever",
        "runtime_mappings",
        "script_fields",
        "search_after",
        "seq_no_primary_term",
        "slice",
        "stats",
        "stored_fields",
        "suggest",
        "terminate_after",
        "version",
    }
)
BULK_ACTIONS = ("create", "delete", "index")
BULK_METADATA = (
    "_id",
    "_index",
    "if_primary_term",
    "if_seq_no",
    "op_type",
    "routing",
    "version",
    "version_type",
)
MAPPING_ROOT = ("_meta", "_routing", "date_detection", "dynamic", "numeric_detection", "properties")
__all__ = ["CLAIMED_SETTINGS", "KNOWN_UNSUPPORTED_QUERIES"]


def claim_lines() -> list[str]:
    """The claim as the docstring and the README list it, one line each."""
    lines = [api.line() for api in APIS]
    lines += [
        f"- every API: {', '.join(sorted(GLOBAL_PARAMS))}",
        f"- queries: {', '.join(QUERIES)}",
        f"- search body: {', '.join(SEARCH_BODY)}; count body: {', '.join(COUNT_BODY)}; "
        f"delete_by_query body: {', '.join(DELETE_BY_QUERY_BODY)}",
        f"- bulk actions: {', '.join(BULK_ACTIONS)}; metadata: {', '.join(BULK_METADATA)}",
        f"- mappings: {', '.join(MAPPING_ROOT)}",
        "- index settings: "
        + ", ".join(sorted(s.removeprefix("index.") for s in CLAIMED_SETTINGS)),
        f"- version {VERSION}; cluster features: {', '.join(CLUSTER_FEATURES)}",
    ]
    return lines
