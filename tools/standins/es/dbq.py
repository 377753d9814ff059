"""`_delete_by_query` as ES runs it: a snapshot, batches of deletes, conflicts, slices, throttling.

ES searches the last refreshed view (a scroll), then deletes the hits batch by batch
(`scroll_size`, 1000 by default), each delete conditional on the sequence number the hit had
in the view. A document changed or deleted since the last refresh fails that condition: a
version conflict. With `conflicts=abort` (the default) the batch in which one happened is
finished, nothing after it is done, and the answer is 409 with the conflicts listed under
`failures`; with `conflicts=proceed` they are only counted (`version_conflicts`). `max_docs`
caps the documents deleted (conflicts do not count against it when proceeding), `slices`
splits the work (`auto`: one slice per shard) and `requests_per_second` throttles between
batches as ES does (the wait is `batch size / rate` less the time the batch took).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.standins.es.errors import EsError, bad_request, validation_failed
from tools.standins.es.searching import Hit
from tools.standins.es.shard import Cas
from tools.standins.es.store import Store

DEFAULT_SCROLL_SIZE = 1000
_RPS_ERROR = "[requests_per_second] must be a float greater than 0. Use -1 to disable throttling."


@dataclass(frozen=True)
class Options:
    """The parameters of one delete-by-query, checked."""

    abort_on_conflict: bool = True
    max_docs: int | None = None
    scroll_size: int = DEFAULT_SCROLL_SIZE
    slices: int | str = 1
    requests_per_second: float | None = None  # None: unthrottled (-1)


@dataclass
class Status:
    """The counters ES reports for a (slice of a) delete-by-query."""

    total: int = 0
    deleted: int = 0
    batches: int = 0
    version_conflicts: int = 0
    throttled_s: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def body(self, rps: float | None) -> dict[str, Any]:
        """The status fields of the answer."""
        return {
            "total": self.total,
            "deleted": self.deleted,
            "batches": self.batches,
            "version_conflicts": self.version_conflicts,
            "noops": 0,
            "retries": {"bulk": 0, "search": 0},
            "throttled_millis": int(self.throttled_s * 1000),
            "requests_per_second": -1.0 if rps is None else rps,
            "throttled_until_millis": 0,
        }


def parse_options(query: Mapping[str, str], body: Mapping[str, Any]) -> Options:
    """The request's options; 400 with ES's messages for invalid ones."""
    conflicts = query.get("conflicts", body.get("conflicts", "abort"))
    if conflicts not in ("abort", "proceed"):
        raise bad_request(f'conflicts may only be "proceed" or "abort" but was [{conflicts}]')
    raw_max = query.get("max_docs", body.get("max_docs"))
    max_docs = None if raw_max is None else _integer("max_docs", raw_max)
    if max_docs is not None and max_docs < 0:
        raise bad_request(f"[max_docs] parameter cannot be negative, found [{max_docs}]")
    scroll_size = _integer("scroll_size", query.get("scroll_size", DEFAULT_SCROLL_SIZE))
    if scroll_size <= 0:
        raise bad_request(f"[scroll_size] parameter must be greater than 0, found [{scroll_size}]")
    slices: int | str = query.get("slices", "1")
    if slices != "auto":
        try:
            slices = int(slices)
        except ValueError:
            slices = 0
        if slices < 1:
            raise bad_request('[slices] must be a positive integer or the string "auto"')
        if max_docs is not None and max_docs < slices:
            raise validation_failed("[max_docs] should be >= [slices]")
    return Options(conflicts == "abort", max_docs, scroll_size, slices, _rate(query))


def _integer(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raw = str(raw)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise bad_request(f"Failed to parse int parameter [{name}] with value [{raw}]") from None


def _rate(query: Mapping[str, str]) -> float | None:
    raw = query.get("requests_per_second")
    if raw is None:
        return None
    try:
        rate = float(raw)
    except ValueError:
        raise bad_request(_RPS_ERROR) from None
    if rate == -1:
        return None
    if not rate > 0:
        raise bad_request(_RPS_ERROR)
    return rate


def slice_count(options: Options, shards: int) -> int:
    """How many slices run: `auto` is one per shard (of the index with the fewest)."""
    return shards if options.slices == "auto" else int(options.slices)


async def _run_slice(
    store: Store, hits: list[Hit], options: Options, max_docs: int | None
) -> Status:
    status = Status(total=len(hits) if max_docs is None else min(len(hits), max_docs))
    position = 0
    while position < len(hits):
        wanted = options.scroll_size
        if max_docs is not None:
            wanted = min(wanted, max_docs - status.deleted)
            if wanted <= 0:
                break
        batch = hits[position : position + wanted]
        position += len(batch)
        started = time.monotonic()
        status.batches += 1
        for hit in batch:
            try:
                # Deleted with internal versioning, on the condition that the document is the
                # one the search saw: its sequence number then, and primary term 1.
                cas = Cas(if_seq_no=hit.doc.seq_no, if_primary_term=1)
                store.record(hit.shard.delete_doc(hit.doc_id, cas))
            except EsError as exc:
                if exc.status != 409:
                    raise
                status.version_conflicts += 1
                if options.abort_on_conflict:
                    status.failures.append(
                        {
                            "index": hit.index.name,
                            "id": hit.doc_id,
                            "cause": exc.cause(),
                            "status": 409,
                        }
                    )
                continue
            status.deleted += 1
        if status.failures:
            break
        if options.requests_per_second is not None and position < len(hits):
            delay = len(batch) / options.requests_per_second - (time.monotonic() - started)
            if delay > 0:
                status.throttled_s += delay
                await asyncio.sleep(delay)
    return status


def _split(count: int, hits: list[Hit], max_docs: int | None) -> list[tuple[list[Hit], int | None]]:
    parts: list[list[Hit]] = [[] for _ in range(count)]
    for n, hit in enumerate(hits):
        # Per shard when slicing by shard count, else spread by position, as ES's slices
        # partition the documents (which slice a document falls in is not specified).
        parts[hit.shard.number % count if count == hit.index.shards else n % count].append(hit)
    caps: list[int | None] = [None] * count
    if max_docs is not None:
        caps = [max_docs // count + (1 if n < max_docs % count else 0) for n in range(count)]
    return list(zip(parts, caps, strict=True))


async def delete_by_query(
    store: Store, hits: list[Hit], options: Options, shards: int
) -> tuple[int, dict[str, Any]]:
    """Run it; the HTTP status and the answer's counters (`failures`, `slices` included)."""
    count = slice_count(options, shards)
    if count == 1:
        statuses = [await _run_slice(store, hits, options, options.max_docs)]
    else:
        statuses = [
            await _run_slice(store, part, options, cap)
            for part, cap in _split(count, hits, options.max_docs)
        ]
    total = Status(
        total=sum(s.total for s in statuses),
        deleted=sum(s.deleted for s in statuses),
        batches=sum(s.batches for s in statuses),
        version_conflicts=sum(s.version_conflicts for s in statuses),
        throttled_s=sum(s.throttled_s for s in statuses),
        failures=[f for s in statuses for f in s.failures],
    )
    body = total.body(options.requests_per_second)
    if count > 1:
        body["slices"] = [
            {"slice_id": n, **s.body(options.requests_per_second)} for n, s in enumerate(statuses)
        ]
    body["failures"] = total.failures
    return (409 if total.failures else 200), body
