"""Elasticsearch 8 stand-in: an in-memory, single-node ES the official client can talk to.

    python -m tools.standins.elasticsearch --host 127.0.0.1 --port 9200 \\
        --control-port 9291 --gc-deletes-s 60 --refresh-interval 1s

Every answer carries `X-Elastic-Product: Elasticsearch` and JSON in the content type the
client asked for; errors have ES's shape `{"error": {"root_cause", "type", "reason", ...},
"status": N}` (bulk items: the bare `error` object).

The claim (`tools/standins/es/claim.py`; the README lists the same, and Elasticsearch's own
YAML REST tests inside it pass, tests/es_rest): these APIs with these query parameters, the
rest refused with a 400 that names what is not supported:

- `info` (GET /): none
- `ping` (HEAD /): none
- `cluster.health` (GET /_cluster/health, GET /_cluster/health/{index}): level, timeout,
  wait_for_active_shards, wait_for_no_initializing_shards, wait_for_no_relocating_shards,
  wait_for_nodes, wait_for_status
- `cat.indices` (GET /_cat/indices, GET /_cat/indices/{index}): format, h, health, s, v
- `indices.create` (PUT /{index}): master_timeout, timeout, wait_for_active_shards
- `indices.get` (GET /{index}): allow_no_indices, ignore_unavailable
- `indices.exists` (HEAD /{index}): allow_no_indices, ignore_unavailable
- `indices.delete` (DELETE /{index}): allow_no_indices, ignore_unavailable, master_timeout,
  timeout
- `indices.get_mapping` (GET /_mapping, GET /{index}/_mapping): allow_no_indices,
  ignore_unavailable
- `indices.put_mapping` (PUT/POST /{index}/_mapping): master_timeout, timeout
- `indices.get_settings` (GET /_settings, GET /{index}/_settings): allow_no_indices,
  flat_settings, ignore_unavailable
- `indices.refresh` (POST/GET /_refresh, POST/GET /{index}/_refresh): allow_no_indices,
  ignore_unavailable
- `index` (PUT/POST /{index}/_doc/{id}, POST /{index}/_doc): if_primary_term, if_seq_no,
  op_type, refresh, routing, timeout, version, version_type, wait_for_active_shards
- `create` (PUT/POST /{index}/_create/{id}): refresh, routing, timeout, version, version_type,
  wait_for_active_shards
- `get` (GET /{index}/_doc/{id}): realtime, refresh, routing, stored_fields, version,
  version_type
- `exists` (HEAD /{index}/_doc/{id}): realtime, refresh, routing, stored_fields, version,
  version_type
- `delete` (DELETE /{index}/_doc/{id}): if_primary_term, if_seq_no, refresh, routing, timeout,
  version, version_type, wait_for_active_shards
- `bulk` (POST/PUT /_bulk, POST/PUT /{index}/_bulk): refresh, routing, timeout,
  wait_for_active_shards
- `search` (POST/GET /_search, POST/GET /{index}/_search): allow_no_indices, from,
  ignore_unavailable, rest_total_hits_as_int, routing, size, timeout, track_total_hits
- `count` (POST/GET /_count, POST/GET /{index}/_count): allow_no_indices, ignore_unavailable,
  routing, terminate_after
- `delete_by_query` (POST /{index}/_delete_by_query): allow_no_indices, conflicts,
  ignore_unavailable, max_docs, refresh, requests_per_second, routing, scroll_size, slices,
  timeout, wait_for_active_shards
- every API: filter_path, pretty
- queries: bool, constant_score, exists, ids, match_all, match_none, range, term, terms
- search body: _source (true/false), from, query, size, sort (fields, _doc, _score; order,
  missing, unmapped_type), timeout, track_total_hits; count body: query; delete_by_query body:
  conflicts, max_docs, query
- bulk actions: create, delete, index; metadata: _id, _index, if_primary_term, if_seq_no,
  op_type, routing, version, version_type
- mappings: _meta, _routing, date_detection, dynamic, numeric_detection, properties
- index settings: gc_deletes, mapping.nested_objects.limit, max_docvalue_fields_search,
  max_result_window, max_script_fields, max_terms_count, number_of_replicas,
  number_of_routing_shards, number_of_shards, refresh_interval, routing.rebalance.enable,
  soft_deletes.enabled
- version 8.19.0; cluster features: bulk_auto_id, ids_query_limit_max_ids,
  mapper.unknown_field_mapping_update_error_message

How it behaves as Elasticsearch does:

- Versioning as ES's engine does it: internal, external, external_gte, `if_seq_no` /
  `if_primary_term`; delete tombstones count in version checks until `--gc-deletes-s` (or
  the index setting `gc_deletes`) has passed, then are forgotten, so an older external
  version is accepted again.
- Shards: documents are routed to shards by `routing` (else the id) with ES's murmur3
  routing, so a document indexed with a routing is found only with it; sequence numbers,
  versions and refreshes are per shard.
- Near-real-time search: GET by id is real time; `_search`, `_count` and `_delete_by_query`
  see each shard's last refreshed view. A shard refreshes on `refresh=true` (the shards the
  write touched), `refresh=wait_for` (the write waits for the next refresh), `_refresh`, a
  GET with `refresh=true`, and every `refresh_interval` (1 s by default; `-1`: never by
  itself). Scheduled refreshes happen on time whether or not the index is searched (ES's
  search-idle shards are not modelled).
- `_delete_by_query` deletes the hits of that view in batches, each delete conditional on the
  sequence number the view saw: a document changed since is a version conflict, counted, and
  with `conflicts=abort` (the default) the end of the request, answered 409 with `failures`.
  Its deletes use internal versioning, so a tombstone holds the document's version plus one.
- Mappings: declared types are checked on write (numbers and numeric strings with ES's
  ranges, booleans, ISO-8601 or epoch-millis dates, scalar keywords, `dense_vector` length;
  400 `document_parsing_exception` "failed to parse field [f] of type [t] in document with id
  'x'. ..." as ES 8.8+ names it), `"dynamic": "strict"` refuses unknown fields, `false`
  ignores them, and otherwise new fields are mapped from their JSON type (string -> text +
  keyword, ISO date string -> date, ...). Dotted names are object paths, in documents and in
  mappings; a path that is both a value and an object is refused as ES refuses it.
- `_bulk`: a malformed request is one 400, as ES's parser answers it; an item that fails
  (an empty `_id`, a mapping error, a version conflict) fails alone.
- One node holds one copy of each shard: a write asking `wait_for_active_shards` for more
  fails at once with 503 (ES fails after `timeout`), an index created so answers
  `shards_acknowledged: false`. `timeout` and `master_timeout` change nothing, since nothing
  here waits for another node.

NOT covered (refused with a 400 that says so, where a request could ask for it): aliases,
data streams, templates, ingest pipelines, `update` (API and bulk action), scroll / PIT /
`search_after`, sorting by scripts or geo distance, aggregations, highlighting, `_source`
filtering, full-text queries (`match` and friends) and text analysis (a `term` on a `text`
field compares the whole value), date math, relevance scores (hits score 1.0, or 0.0 for
filter-only queries; without `sort`, hits are ordered by `_id`), replicas (reported, never
assigned), security, snapshots, tasks (`wait_for_completion=false`) and the other APIs.
Document parse errors carry no `[line:col]` prefix.

Control API on `--control-port` (see `tools.standins.faults`): faults `down`, `error`, `slow`,
`timeout` and `bulk_reject` (odd-numbered bulk items fail with 429 and are not applied);
`POST /reset`; `GET /stats` = `{"requests": N, "applied": {"<index>/<id>": writes applied}}`,
where an applied write is an index or delete that ES would have executed (a delete of a
missing doc included), not one refused by a conflict, a mapping error or a fault.
"""

from __future__ import annotations

from tools.standins.es.app import build_app
from tools.standins.es.http import Runtime
from tools.standins.es.settings import time_value
from tools.standins.es.store import Store
from tools.standins.faults import FaultState
from tools.standins.server import base_parser, run


def main(argv: list[str] | None = None) -> None:
    """Run the ES stand-in until SIGTERM or SIGINT."""
    parser = base_parser("Elasticsearch 8 stand-in")
    parser.add_argument(
        "--gc-deletes-s",
        type=float,
        default=60.0,
        help="how long delete tombstones take part in version checks (ES's index.gc_deletes)",
    )
    parser.add_argument(
        "--refresh-interval",
        default="1s",
        help="refresh_interval of indices that set none (ES's 1s; -1: only explicit refreshes)",
    )
    args = parser.parse_args(argv)
    time_value(args.refresh_interval, "--refresh-interval")
    store = Store(args.gc_deletes_s, args.refresh_interval)
    state = Runtime(store, FaultState(extra_modes={"bulk_reject"}))
    run(build_app(state), name="es-standin", args=args, state=state)


if __name__ == "__main__":
    main()
