"""Versioned writes of catalog items to Elasticsearch (what a worker does for each task).

Every write carries an external version (its place in acceptance order, `versions`), so ES
keeps the newest one whatever order retries arrive in; a write refused as outdated ends as
"superseded", a success. Bulk writes remember per item what is done, so a retry sends only
the items that failed transiently.

Deletes are fenced against upserts still in flight. An upsert checks the delete memory
before it writes and again after: a delete or delete-all accepted after it that ran in
between (while the upsert waited for embeddings, say) left a tombstone or watermark, and the
upsert then deletes what it wrote, at the delete's version. A delete-all refreshes the index
after recording its watermark, so every upsert indexed before the watermark is visible to
its delete-by-query, and every one indexed after sees the watermark in its second check.

"May have written" is fenced too. What an attempt writes is known before it starts (its
keys from the payload, its version from the acceptance number; the claim that starts it is
committed first): when an earlier attempt may have written and lost its answer (`fence`),
every exit, "superseded" ones included, deletes at the covering delete's version what that
attempt may have left. Such a delete only carries out what the delete memory already says,
so it is harmless where nothing was written. A delete-all sweeps a second time once the
writes in flight when it started have landed or never will (the client timeout later).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch, ConflictError, NotFoundError

from services.core.errors import TransientError, is_retryable_status
from services.core.search.catalog import Kind, doc_id
from services.core.search.document import build_document
from services.core.search.embeddings import EmbeddingProvider, embedding_text
from services.core.search.errors import as_task_error, describe
from services.core.search.indices import IndexManager
from services.core.search.tombstones import DeleteMemory
from services.core.tasklog.models import utcnow

T = TypeVar("T")
SUPERSEDED = "superseded"
WRITTEN = ("created", "updated")


@dataclass(frozen=True)
class Item:
    """One item to upsert, with the version of this write."""

    item_id: str
    data: dict[str, Any]
    version: int
    # Refused at acceptance (an older caller version): not sent, reported as superseded.
    refused: bool = False


@dataclass
class BulkProgress:
    """Per-item outcomes of a bulk task so far; `save` persists them between attempts."""

    done: dict[str, str] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    save: Callable[[dict[str, Any]], None] = lambda _: None
    # Steps of a write that is not per item (a delete-all's first sweep).
    steps: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict[str, Any] | None, save: Callable[[dict[str, Any]], None]
    ) -> BulkProgress:
        """Progress restored from a task checkpoint."""
        checkpoint = checkpoint or {}
        return cls(
            dict(checkpoint.get("done", {})),
            dict(checkpoint.get("errors", {})),
            save,
            dict(checkpoint.get("steps", {})),
        )

    def settled(self, key: str) -> bool:
        """Whether an item needs no more work."""
        return key in self.done or key in self.errors

    def persist(self) -> None:
        """Save the progress so far."""
        saved: dict[str, Any] = {"done": self.done, "errors": self.errors}
        if self.steps:
            saved["steps"] = self.steps
        self.save(saved)

    def summary(self, total: int) -> dict[str, Any]:
        """The task result of a bulk write."""
        counts: dict[str, int] = {}
        for outcome in self.done.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return {
            "total": total,
            "outcomes": counts,
            "failed": [{"id": k, **v} for k, v in sorted(self.errors.items())],
        }


async def _es(call: Awaitable[T]) -> T:
    """Await an ES call, turning client errors into transient/permanent task errors."""
    try:
        return await call
    except (ConflictError, NotFoundError):
        raise
    except (ApiError, TransportError) as exc:
        raise as_task_error(exc) from exc


class CatalogWriter:
    """Writes catalog items of one Elasticsearch cluster."""

    def __init__(
        self,
        *,
        client: AsyncElasticsearch,
        indices: IndexManager,
        deletes: DeleteMemory,
        embeddings: EmbeddingProvider,
        embed_fields: list[str],
        clock: Callable[[], datetime] = utcnow,
        settle_s: float = 10.0,
    ) -> None:
        self._client = client
        self._indices = indices
        self._deletes = deletes
        self._embeddings = embeddings
        self._embed_fields = embed_fields
        self._clock = clock
        # The client timeout: how long a write sent may still land after it was sent.
        self.settle_s = settle_s

    async def ensure_indices(self) -> list[str]:
        """Create the catalog indices that are missing."""
        return await _es(self._indices.ensure_all())

    async def aclose(self) -> None:
        """Close the client and the embeddings provider."""
        await self._client.close()
        await self._embeddings.aclose()

    async def _vectors(
        self, items: list[Item], with_embedding: bool, api_key: str | None
    ) -> list[list[float] | None]:
        if not with_embedding or self._embeddings.dimensions is None:
            return [None] * len(items)
        texts = [embedding_text(i.data, self._embed_fields) for i in items]
        wanted = [n for n, text in enumerate(texts) if text]
        vectors = await self._embeddings.embed([texts[n] for n in wanted], api_key=api_key)
        found: list[list[float] | None] = [None] * len(items)
        for n, vector in zip(wanted, vectors, strict=True):
            found[n] = vector
        return found

    def _document(self, customer_id: str, item: Item, vector: list[float] | None) -> dict[str, Any]:
        return build_document(
            item.data,
            customer_id=customer_id,
            item_id=item.item_id,
            version=item.version,
            synced_at=self._clock().isoformat(),
            vector=vector,
        )

    async def upsert(
        self,
        kind: Kind,
        customer_id: str,
        item: Item,
        *,
        with_embedding: bool = False,
        api_key: str | None = None,
        fence: bool = False,
    ) -> dict[str, Any]:
        """Index one item unless a newer write or delete already happened.

        With `fence`, an earlier attempt may have written it unseen: a delete recorded since
        removes that too, whichever way this attempt ends.
        """
        index = await _es(self._indices.ensure(kind))
        key = doc_id(customer_id, item.item_id)
        deleted_at = self._deletes.deleted_versions(index, customer_id, [key]).get(key)
        if deleted_at is not None and deleted_at >= item.version:
            if fence:
                await self._delete_at(index, customer_id, key, deleted_at)
            return {"result": SUPERSEDED, "reason": "deleted by a newer delete", "id": key}
        [vector] = await self._vectors([item], with_embedding, api_key)
        try:
            answer = await _es(
                self._client.index(
                    index=index,
                    id=key,
                    document=self._document(customer_id, item, vector),
                    version=item.version,
                    version_type="external",
                    routing=customer_id,
                )
            )
        except ConflictError:
            # An equal or newer version is stored: perhaps this very write, by an earlier
            # attempt whose answer was lost. A delete recorded since must still remove it.
            await self._undo_if_deleted(index, customer_id, {key: item.version})
            return {
                "result": SUPERSEDED,
                "reason": "an equal or newer version is stored",
                "id": key,
            }
        if await self._undo_if_deleted(index, customer_id, {key: item.version}):
            return {"result": SUPERSEDED, "reason": "deleted by a later delete", "id": key}
        return {"result": answer["result"], "id": key, "version": item.version}

    async def _delete_versioned(self, index: str, customer_id: str, key: str, version: int) -> None:
        """Delete a document at `version`: ConflictError if a newer one is stored."""
        await _es(
            self._client.delete(
                index=index, id=key, version=version, version_type="external", routing=customer_id
            )
        )

    async def _delete_at(self, index: str, customer_id: str, key: str, version: int) -> None:
        """Delete a document at a delete's version: removes what an older write left, never
        a newer write (a conflict), and is a no-op where nothing is stored."""
        with contextlib.suppress(ConflictError, NotFoundError):
            await self._delete_versioned(index, customer_id, key, version)

    async def _undo_if_deleted(
        self, index: str, customer_id: str, written: dict[str, int]
    ) -> set[str]:
        """Delete what we just wrote where a later delete was recorded meanwhile.

        The delete is sent at the later delete's version, so it removes exactly the document
        we wrote (or an older one) and never a newer write. The ids undone are returned.
        """
        covered = self._deletes.deleted_versions(index, customer_id, list(written))
        undone: set[str] = set()
        for key, version in written.items():
            later = covered.get(key)
            if later is None or later <= version:
                continue
            # A conflict means a newer write is stored; not found, the delete got there first.
            await self._delete_at(index, customer_id, key, later)
            undone.add(key)
        return undone

    async def delete(
        self, kind: Kind, customer_id: str, item_id: str, version: int
    ) -> dict[str, Any]:
        """Delete one item unless a newer write happened; remember the delete either way."""
        index = await _es(self._indices.ensure(kind))
        key = doc_id(customer_id, item_id)
        self._deletes.record_deletes(index, [key], version)
        try:
            await self._delete_versioned(index, customer_id, key, version)
        except ConflictError:
            return {"result": SUPERSEDED, "reason": "a newer version is stored", "id": key}
        except NotFoundError:
            return {"result": "not_found", "id": key, "version": version}
        return {"result": "deleted", "id": key, "version": version}

    async def delete_all(
        self, kind: Kind, customer_id: str, version: int, *, again: bool = False
    ) -> dict[str, Any]:
        """Delete a customer's items written before `version`; newer ones stay.

        `again`: the sweep once the writes in flight at the first one have landed (the
        watermark is recorded already).
        """
        index = await _es(self._indices.ensure(kind))
        if not again:
            self._deletes.record_delete_all(index, customer_id, version)
        # Make every upsert indexed before the watermark visible to the delete-by-query (ES
        # searches the last refreshed view); later ones see the watermark and undo themselves.
        await _es(self._client.indices.refresh(index=index))
        answer = await _es(
            self._client.delete_by_query(
                index=index,
                routing=customer_id,
                conflicts="proceed",
                refresh=True,
                query={
                    "bool": {
                        "filter": [
                            {"term": {"customer_id": customer_id}},
                            {"range": {"sync_version": {"lte": version}}},
                        ]
                    }
                },
            )
        )
        if answer.get("failures"):
            raise TransientError(f"delete-all left failures: {answer['failures'][:3]}")
        return {"result": "deleted", "deleted": answer.get("deleted", 0), "version": version}

    async def bulk_upsert(
        self,
        kind: Kind,
        customer_id: str,
        items: list[Item],
        progress: BulkProgress,
        *,
        with_embedding: bool = False,
        api_key: str | None = None,
        fence: bool = False,
    ) -> dict[str, Any]:
        """Index many items; only items not yet settled are sent.

        With `fence`, an earlier attempt may have written any of them unseen: a delete
        recorded since removes those too.
        """
        index = await _es(self._indices.ensure(kind))
        pending = [i for i in items if not progress.settled(doc_id(customer_id, i.item_id))]
        keys = [doc_id(customer_id, i.item_id) for i in pending]
        deleted = self._deletes.deleted_versions(index, customer_id, keys)
        live: list[Item] = []
        for item, key in zip(pending, keys, strict=True):
            if item.refused or deleted.get(key, -1) >= item.version:
                progress.done[key] = SUPERSEDED
            else:
                live.append(item)
        vectors = await self._vectors(live, with_embedding, api_key)
        operations: list[dict[str, Any]] = []
        for item, vector in zip(live, vectors, strict=True):
            operations.append(
                {
                    "index": {
                        "_index": index,
                        "_id": doc_id(customer_id, item.item_id),
                        "version": item.version,
                        "version_type": "external",
                        "routing": customer_id,
                    }
                }
            )
            operations.append(self._document(customer_id, item, vector))
        await self._send_bulk(operations, progress, "index")
        # Every item this task wrote, in this attempt or an earlier one, is checked again;
        # with `fence`, every item an earlier attempt may have written.
        written = {
            doc_id(customer_id, i.item_id): i.version
            for i in items
            if not i.refused
            and (fence or progress.done.get(doc_id(customer_id, i.item_id)) in WRITTEN)
        }
        for key in await self._undo_if_deleted(index, customer_id, written):
            progress.done[key] = SUPERSEDED
        if written:
            progress.persist()
        return self._finish(progress, len(items))

    async def bulk_delete(
        self,
        kind: Kind,
        customer_id: str,
        item_ids: list[str],
        version: int,
        progress: BulkProgress,
        *,
        refused: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Delete many items; only items not yet settled (nor refused) are sent."""
        index = await _es(self._indices.ensure(kind))
        for item_id in refused:
            progress.done[doc_id(customer_id, item_id)] = SUPERSEDED
        keys = [doc_id(customer_id, i) for i in item_ids if i not in refused]
        self._deletes.record_deletes(index, keys, version)
        operations = [
            {
                "delete": {
                    "_index": index,
                    "_id": key,
                    "version": version,
                    "version_type": "external",
                    "routing": customer_id,
                }
            }
            for key in keys
            if not progress.settled(key)
        ]
        await self._send_bulk(operations, progress, "delete")
        return self._finish(progress, len(item_ids))

    async def _send_bulk(
        self, operations: list[dict[str, Any]], progress: BulkProgress, action: str
    ) -> None:
        if not operations:
            return
        answer = await _es(self._client.bulk(operations=operations))
        for entry in answer["items"]:
            result = entry[action]
            key, status = result["_id"], result["status"]
            if status < 300:
                progress.done[key] = result.get("result", "ok")
            elif status == 409:
                progress.done[key] = SUPERSEDED
            elif status == 404 and action == "delete":
                progress.done[key] = "not_found"
            elif not is_retryable_status(status):
                progress.errors[key] = {"status": status, "reason": describe(result)}
        progress.persist()

    def _finish(self, progress: BulkProgress, total: int) -> dict[str, Any]:
        unsettled = total - len(progress.done) - len(progress.errors)
        if unsettled > 0:
            raise TransientError(
                f"{unsettled} of {total} items were refused for now; retrying them"
            )
        return progress.summary(total)
