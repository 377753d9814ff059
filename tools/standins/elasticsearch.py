"""Elasticsearch 8 stand-in: an in-memory, single-node ES the official client can talk to.

    python -m tools.standins.elasticsearch --host 127.0.0.1 --port 9200 \\
        --control-port 9291 --gc-deletes-s 60

Every answer carries `X-Elastic-Product: Elasticsearch` and JSON in the content type the
client asked for; errors have ES's shape `{"error": {"root_cause", "type", "reason", ...},
"status": N}` (bulk items: the bare `error` object).

Covered:

- `GET|HEAD /`, `GET /_cluster/health` (yellow while any index has replicas: one node),
  `GET /_cat/indices[/{index}]` (`format=json` or a text table).
- Indices: `PUT /{index}` (`mappings`, `settings`; 400 `resource_already_exists_exception`,
  `invalid_index_name_exception`), `HEAD|GET|DELETE /{index}`, `GET|PUT /{index}/_mapping`
  (new fields merge; a type change is 400), `/{index}/_refresh` (a no-op).
- Documents: `PUT|POST /{index}/_doc/{id}`, `POST /{index}/_doc` (generated id),
  `PUT|POST /{index}/_create/{id}`, `GET|HEAD|DELETE /{index}/_doc/{id}` with `version`,
  `version_type` (internal, external, external_gte), `op_type`, `routing`, `refresh`. Writes
  create a missing index (a delete only with external versioning, as in ES); reads of a missing
  index are 404 `index_not_found_exception`.
- Versioning as ES's engine does it, delete tombstones included: they count in version checks
  until `--gc-deletes-s` (or the index setting `index.gc_deletes`) has passed, then are
  forgotten, so an older external version is accepted again. `_delete_by_query` deletes with
  internal versioning, as ES does, so its tombstones carry the doc's version plus one.
- Mappings: declared types are checked on write (numbers and numeric strings with ES's
  ranges, booleans, ISO-8601 or epoch-millis dates, scalar keywords, `dense_vector` length;
  400 `document_parsing_exception` "failed to parse field [f] of type [t] in document with id
  'x'. ..." as ES 8.8+ names it), `"dynamic": "strict"` refuses unknown fields
  (`strict_dynamic_mapping_exception`), `false` ignores them, and otherwise new fields are
  mapped from their JSON type (string -> text + keyword, ISO date string -> date, ...).
- `POST /_bulk`, `POST /{index}/_bulk`: `index`, `create`, `delete` with per-item results and
  errors as ES gives them.
- `_search` (index lists and `*` patterns, `size`, `from`, `_source: bool`), `_count`,
  `_delete_by_query`, with `match_all`, `term`, `terms`, `range`, `ids`, `exists`,
  `constant_score` and `bool` (must, filter, must_not, should). Hits are ordered by `_id`.

NOT covered (refused with a 400 that says so, where a request could ask for it): aliases, data
streams, templates, ingest pipelines, `update` (API and bulk action), `if_seq_no` /
`if_primary_term`, scroll / PIT / `search_after`, sorting, aggregations, highlighting,
`_source` filtering, full-text queries (`match` and friends) and text analysis (a `term` on a
`text` field compares the whole value), date math, relevance scores (hits score 1.0, or 0.0
for filter-only queries), near-real-time refresh (every write is searchable at once), shards
and replicas (reported, never simulated), security, snapshots, tasks and the other APIs.
Document parse errors carry no `[line:col]` prefix; bulk validation reports the first bad
action only.

Control API on `--control-port` (see `tools.standins.faults`): faults `down`, `error`, `slow`,
`timeout` and `bulk_reject` (odd-numbered bulk items fail with 429 and are not applied);
`POST /reset`; `GET /stats` = `{"requests": N, "applied": {"<index>/<id>": writes applied}}`,
where an applied write is an index or delete that ES would have executed (a delete of a
missing doc included), not one refused by a conflict, a mapping error or a fault.
"""

from __future__ import annotations

from tools.standins.es.app import build_app
from tools.standins.es.http import Runtime
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
    args = parser.parse_args(argv)
    state = Runtime(Store(args.gc_deletes_s), FaultState(extra_modes={"bulk_reject"}))
    run(build_app(state), name="es-standin", args=args, state=state)


if __name__ == "__main__":
    main()
