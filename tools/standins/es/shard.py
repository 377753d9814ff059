"""One shard: live documents with Elasticsearch's versioning, and the view search sees.

Writes change the live documents at once: a GET by id is real time, and version and
sequence-number checks see every write. Search, count and delete-by-query see the shard's
last *refreshed* view instead, as on a real cluster: a write becomes searchable when the shard
refreshes, which happens on `refresh=true` (this shard only), the `_refresh` API, or every
`index.refresh_interval` (1 s by default, never with `-1`). Scheduled refreshes are computed
when somebody looks: at a search at time T, the view holds every write made up to the last
tick before T (ticks every interval from the index's creation).

A delete leaves a tombstone carrying the deleted version; it takes part in version checks
until `gc_deletes` seconds have passed (ES's `index.gc_deletes`, 60 s by default). After that
the id is unknown again, so an older external version is accepted once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from tools.standins.es.errors import EsError, version_conflict

PRIMARY_TERM = 1
# ES's `index.max_refresh_listeners`: past this many `refresh=wait_for` writers, one forces it.
MAX_REFRESH_LISTENERS = 1000


@dataclass(frozen=True)
class Doc:
    """A document as one write left it (never changed afterwards)."""

    source: dict[str, Any]
    version: int
    seq_no: int
    routing: str | None


@dataclass(frozen=True)
class Tombstone:
    """What a delete leaves behind: the deleted version, until `expires_at` (monotonic)."""

    version: int
    expires_at: float


@dataclass(frozen=True)
class WriteResult:
    """The outcome of an applied index or delete operation."""

    index: str
    doc_id: str
    version: int
    seq_no: int
    result: str  # created, updated, deleted, not_found
    shard: int
    refresh_ticket: int  # the write is searchable once the shard has refreshed this far

    @property
    def status(self) -> int:
        """HTTP status of this result, as ES answers it."""
        return {"created": 201, "not_found": 404}.get(self.result, 200)


@dataclass(frozen=True)
class Cas:
    """A write's concurrency condition: a version (and its type) or `if_seq_no`/term."""

    version: int | None = None
    version_type: str = "internal"
    if_seq_no: int | None = None
    if_primary_term: int | None = None


class Clock:
    """When an index's scheduled refreshes happen (`interval_s` None: never)."""

    def __init__(self, interval_s: float | None) -> None:
        self.origin = time.monotonic()
        self.interval_s = interval_s

    def last_tick(self, now: float) -> float | None:
        """The last scheduled refresh at or before `now`."""
        if self.interval_s is None:
            return None
        ticks = math.floor((now - self.origin) / self.interval_s)
        return self.origin + ticks * self.interval_s

    def next_tick(self, now: float) -> float | None:
        """The first scheduled refresh after `now`."""
        last = self.last_tick(now)
        return None if last is None or self.interval_s is None else last + self.interval_s


class Shard:
    """Live documents, tombstones and the refreshed view of one shard."""

    def __init__(self, index: str, number: int, index_uuid: str, clock: Clock, gc_s: float):
        self.index = index
        self.number = number
        self.index_uuid = index_uuid
        self.clock = clock
        self.gc_deletes_s = gc_s
        self.docs: dict[str, Doc] = {}
        self.tombstones: dict[str, Tombstone] = {}
        self.searchable: dict[str, Doc] = {}
        # Writes not yet refreshed: (time, ticket, id, doc or None for a delete).
        self._pending: deque[tuple[float, int, str, Doc | None]] = deque()
        self._tickets = 0
        self.refreshed_upto = 0
        self._next_seq_no = 0
        self._refreshed: asyncio.Event | None = None
        self.waiting = 0

    # -- versions ---------------------------------------------------------------------------

    def current_version(self, doc_id: str) -> int | None:
        """The version ES compares against: the live doc's, else a live tombstone's."""
        doc = self.docs.get(doc_id)
        if doc is not None:
            return doc.version
        tombstone = self.tombstones.get(doc_id)
        if tombstone is None:
            return None
        if time.monotonic() >= tombstone.expires_at:
            del self.tombstones[doc_id]  # ES's gc_deletes: the delete is forgotten
            return None
        return tombstone.version

    def live_tombstones(self) -> int:
        """How many deletes still take part in version checks."""
        return sum(1 for d in list(self.tombstones) if self.current_version(d) is not None)

    def _conflict(self, doc_id: str, detail: str) -> EsError:
        return version_conflict(
            doc_id, detail, index=self.index, index_uuid=self.index_uuid, shard=self.number
        )

    def _check_seq_no(self, doc_id: str, cas: Cas) -> None:
        if cas.if_seq_no is None:
            return
        doc = self.docs.get(doc_id)
        wanted = f"required seqNo [{cas.if_seq_no}], primary term [{cas.if_primary_term}]."
        if doc is None:
            raise self._conflict(doc_id, f"{wanted} but no document was found")
        if doc.seq_no != cas.if_seq_no or cas.if_primary_term != PRIMARY_TERM:
            raise self._conflict(
                doc_id,
                f"{wanted} current document has seqNo [{doc.seq_no}] and primary term "
                f"[{PRIMARY_TERM}]",
            )

    def _next_version(self, doc_id: str, cas: Cas) -> int:
        current = self.current_version(doc_id)
        if cas.version_type == "internal":
            if cas.if_seq_no is not None and doc_id in self.docs:
                return self.docs[doc_id].version + 1
            return 1 if current is None else current + 1
        version = cas.version
        assert version is not None  # checked by the request layer
        if current is not None:
            if cas.version_type == "external" and current >= version:
                raise self._conflict(
                    doc_id,
                    f"current version [{current}] is higher or equal to the one provided "
                    f"[{version}]",
                )
            if cas.version_type == "external_gte" and current > version:
                raise self._conflict(
                    doc_id,
                    f"current version [{current}] is higher than the one provided [{version}]",
                )
        return version

    # -- writes -----------------------------------------------------------------------------

    def _seq_no(self) -> int:
        self._next_seq_no += 1
        return self._next_seq_no - 1

    def _pend(self, doc_id: str, doc: Doc | None) -> int:
        self._tickets += 1
        self._pending.append((time.monotonic(), self._tickets, doc_id, doc))
        return self._tickets

    def index_doc(
        self,
        doc_id: str,
        source: dict[str, Any],
        cas: Cas,
        *,
        create_only: bool,
        routing: str | None,
    ) -> WriteResult:
        """Index (or create) a document after the version or sequence-number check."""
        if create_only and doc_id in self.docs:
            current = self.docs[doc_id].version
            raise self._conflict(doc_id, f"document already exists (current version [{current}])")
        self._check_seq_no(doc_id, cas)
        new_version = self._next_version(doc_id, cas)
        result = "updated" if doc_id in self.docs else "created"
        doc = Doc(source, new_version, self._seq_no(), routing)
        self.docs[doc_id] = doc
        self.tombstones.pop(doc_id, None)
        ticket = self._pend(doc_id, doc)
        return WriteResult(self.index, doc_id, new_version, doc.seq_no, result, self.number, ticket)

    def delete_doc(self, doc_id: str, cas: Cas) -> WriteResult:
        """Delete a document, leaving a tombstone even when it did not exist (as ES does)."""
        self._check_seq_no(doc_id, cas)
        new_version = self._next_version(doc_id, cas)
        result = "deleted" if self.docs.pop(doc_id, None) is not None else "not_found"
        expires = time.monotonic() + self.gc_deletes_s
        self.tombstones[doc_id] = Tombstone(new_version, expires)
        ticket = self._pend(doc_id, None)
        return WriteResult(
            self.index, doc_id, new_version, self._seq_no(), result, self.number, ticket
        )

    # -- near-real-time search ----------------------------------------------------------------

    def refresh(self) -> None:
        """Make every write so far searchable."""
        self._apply(until=None)

    def catch_up(self) -> None:
        """Apply the scheduled refreshes that are due by now."""
        tick = self.clock.last_tick(time.monotonic())
        if tick is not None and self._pending and self._pending[0][0] <= tick:
            self._apply(until=tick)

    def _apply(self, until: float | None) -> None:
        while self._pending and (until is None or self._pending[0][0] <= until):
            _, ticket, doc_id, doc = self._pending.popleft()
            if doc is None:
                self.searchable.pop(doc_id, None)
            else:
                self.searchable[doc_id] = doc
            self.refreshed_upto = ticket
        if until is None:
            self.refreshed_upto = self._tickets
        if self._refreshed is not None:
            self._refreshed.set()
            self._refreshed = None

    def view(self) -> dict[str, Doc]:
        """What a search sees now."""
        self.catch_up()
        return self.searchable

    async def wait_visible(self, ticket: int) -> bool:
        """Wait until a write is searchable (`refresh=wait_for`); True if it forced a refresh."""
        if self.waiting >= MAX_REFRESH_LISTENERS:
            self.refresh()
            return True
        self.waiting += 1
        try:
            while True:
                self.catch_up()
                if self.refreshed_upto >= ticket:
                    return False
                if self._refreshed is None:
                    self._refreshed = asyncio.Event()
                event = self._refreshed
                now = time.monotonic()
                tick = self.clock.next_tick(now)
                timeout = None if tick is None else max(0.0, tick - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
        finally:
            self.waiting -= 1
