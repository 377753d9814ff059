"""What searches share: resolving indices and routing to shards, matching, shard failures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tools.standins.es.errors import EsError
from tools.standins.es.query import Target, check_query, compile_query
from tools.standins.es.routing import shard_of
from tools.standins.es.shard import Doc, Shard
from tools.standins.es.store import Index, Store


@dataclass(frozen=True)
class Hit:
    """A matching document as the searched view holds it."""

    index: Index
    shard: Shard
    doc_id: str
    doc: Doc


def bool_param(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A boolean query parameter; `?name` alone is true, as in ES."""
    raw = query.get(name)
    if raw is None:
        return default
    if raw in ("", "true"):
        return True
    if raw == "false":
        return False
    raise EsError(
        400,
        "illegal_argument_exception",
        f"Failed to parse value [{raw}] as only [true] or [false] are allowed.",
    )


def target_indices(store: Store, expression: str, query: Mapping[str, str]) -> list[Index]:
    """The indices a search names, with `ignore_unavailable` and `allow_no_indices`."""
    return store.resolve(
        expression,
        ignore_unavailable=bool_param(query, "ignore_unavailable"),
        allow_no_indices=bool_param(query, "allow_no_indices", default=True),
    )


def routed_shards(index: Index, routing: str | None) -> list[Shard]:
    """The shards a search with `routing` (comma-separated values) goes to."""
    if routing is None or index.shards == 1:
        return index.shard_list
    numbers = {shard_of(r, index.shards, index.routing_shards) for r in routing.split(",")}
    return [index.shard_list[n] for n in sorted(numbers)]


def shard_failure(error: EsError, shards: list[Shard]) -> EsError:
    """A query every shard failed, in ES's `search_phase_execution_exception` shape."""
    failed = [
        {"shard": s.number, "index": s.index, "node": "standin-node", "reason": error.cause()}
        for s in shards
    ]
    failure = EsError(
        error.status,
        "search_phase_execution_exception",
        "all shards failed",
        phase="query",
        grouped=True,
        failed_shards=failed[:1],
    )
    failure.root_causes = [error.cause()]
    return failure


def find(
    indices: list[Index], query: object, routing: str | None = None
) -> tuple[list[Shard], list[Hit]]:
    """The searched shards and the matching documents, ordered by `_id` then index."""
    check_query(query)  # refuse a malformed query even when no index matches
    shards: list[Shard] = []
    hits: list[Hit] = []
    for index in indices:
        targets = routed_shards(index, routing)
        shards.extend(targets)
        target = Target(
            index.name,
            index.mappings,
            index.uuid,
            max_terms_count=index.setting("index.max_terms_count", 65_536),
            max_result_window=index.setting("index.max_result_window", 10_000),
        )
        try:
            predicate = compile_query(query, target)
        except EsError as exc:
            if exc.type == "query_shard_exception":
                raise shard_failure(exc, targets) from None
            raise
        for shard in targets:
            hits.extend(
                Hit(index, shard, doc_id, doc)
                for doc_id, doc in shard.view().items()
                if predicate(doc_id, doc)
            )
    hits.sort(key=lambda hit: (hit.doc_id, hit.index.name))
    return shards, hits


def shard_summary(shards: list[Shard]) -> dict[str, int]:
    """The `_shards` header of a search."""
    return {"total": len(shards), "successful": len(shards), "skipped": 0, "failed": 0}
