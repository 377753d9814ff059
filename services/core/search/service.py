"""The catalog service behind the plan's functions: queue a write, or perform it now.

Queued writes are recorded in the task log and published (`services/core/enqueue.py`), or,
given the caller's `session`, recorded inside the caller's transaction and published once it
commits (`services/core/outbox`). `async_mode=False` draws a place in acceptance order and
writes now, as the worker would.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from services.core.config import Settings
from services.core.enqueue import Enqueuer
from services.core.errors import WaitForInFlight
from services.core.outbox.binding import CallerTransaction
from services.core.outbox.queuing import Queuing
from services.core.search import apply, payloads
from services.core.search.catalog import Kind, Operation
from services.core.search.runtime import make_writer
from services.core.search.writer import BulkProgress, CatalogWriter


class CatalogService:
    """Queues catalog writes as tracked tasks, or performs them at once."""

    def __init__(self, settings: Settings, enqueuer: Enqueuer | None = None) -> None:
        self._settings = settings
        self._queuing = Queuing(settings, enqueuer)
        # One writer per event loop: the async client's sessions belong to the loop.
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CatalogWriter] = (
            weakref.WeakKeyDictionary()
        )

    def enqueuer(self) -> Enqueuer:
        """The enqueue path, built on first use."""
        return self._queuing.enqueuer()

    def _writer(self) -> CatalogWriter:
        loop = asyncio.get_running_loop()
        if loop not in self._writers:
            self._writers[loop] = make_writer(self._settings)
        return self._writers[loop]

    async def aclose(self) -> None:
        """Close the writer of the running event loop, if one was opened."""
        writer = self._writers.pop(asyncio.get_running_loop(), None)
        if writer is not None:
            await writer.aclose()

    async def submit(
        self,
        kind: Kind,
        op: Operation,
        payload: dict[str, Any],
        *,
        api_key: str | None,
        async_mode: bool,
        user_id: str | None = None,
        idempotency_key: str | None = None,
        session: CallerTransaction | None = None,
    ) -> dict[str, Any]:
        """Queue the write (async_mode; in the caller's transaction with `session`) or
        perform it now."""
        task_name = kind.task_name(op)
        if not async_mode:
            if session is not None or idempotency_key is not None:
                raise ValueError(
                    "async_mode=False writes now: it cannot join the caller's transaction or "
                    "take an idempotency key; queue the write (async_mode=True) instead"
                )
            seq, payload = await asyncio.to_thread(self.enqueuer().reserve, task_name, payload)
            return await self._write_now(kind, op, payload, seq, api_key)
        accepted = await self._queuing.queue(
            task_name,
            payload,
            user_id=user_id,
            secrets={"api_key": api_key} if api_key else None,
            idempotency_key=idempotency_key,
            session=session,
        )
        return {"status": "queued", "task_id": accepted.task_id}

    async def _write_now(
        self, kind: Kind, op: Operation, payload: dict[str, Any], seq: int, api_key: str | None
    ) -> dict[str, Any]:
        progress = BulkProgress()
        while True:
            try:
                return await apply.execute(
                    self._writer(), kind, op, payload, seq=seq, api_key=api_key, progress=progress
                )
            except WaitForInFlight as later:  # a delete-all's second sweep, done now
                await asyncio.sleep(later.delay_s)

    async def upsert(
        self,
        kind: Kind,
        customer_id: str,
        data: dict[str, Any],
        with_embedding: bool,
        api_key: str | None,
        async_mode: bool,
        version: int | None,
        user_id: str | None,
        *,
        idempotency_key: str | None = None,
        session: CallerTransaction | None = None,
    ) -> dict[str, Any]:
        """Upsert one item whose id is data["id"]."""
        if "id" not in data:
            raise ValueError(f"{kind.singular}_data needs an 'id'")
        payload = payloads.upsert(
            customer_id,
            data["id"],
            data,
            with_embedding=with_embedding,
            version=version,
        )
        return await self.submit(
            kind,
            Operation.UPSERT,
            payload,
            api_key=api_key,
            async_mode=async_mode,
            user_id=user_id,
            idempotency_key=idempotency_key,
            session=session,
        )

    async def delete(
        self,
        kind: Kind,
        customer_id: str,
        item_id: Any,
        async_mode: bool,
        version: int | None,
        user_id: str | None,
        *,
        idempotency_key: str | None = None,
        session: CallerTransaction | None = None,
    ) -> dict[str, Any]:
        """Delete one item."""
        payload = payloads.delete(customer_id, item_id, version=version)
        return await self.submit(
            kind,
            Operation.DELETE,
            payload,
            api_key=None,
            async_mode=async_mode,
            user_id=user_id,
            idempotency_key=idempotency_key,
            session=session,
        )

    async def bulk_upsert(
        self,
        kind: Kind,
        customer_id: str,
        items_data: list[dict[str, Any]],
        with_embedding: bool,
        api_key: str | None,
        async_mode: bool,
        user_id: str | None,
        *,
        idempotency_key: str | None = None,
        session: CallerTransaction | None = None,
    ) -> dict[str, Any]:
        """Upsert many items, each with its id in data["id"] (and optional "version")."""
        items = [{"id": d.get("id"), "data": d, "version": d.get("version")} for d in items_data]
        payload = payloads.bulk_upsert(customer_id, items, with_embedding=with_embedding)
        return await self.submit(
            kind,
            Operation.BULK_UPSERT,
            payload,
            api_key=api_key,
            async_mode=async_mode,
            user_id=user_id,
            idempotency_key=idempotency_key,
            session=session,
        )

    async def bulk_delete(
        self,
        kind: Kind,
        customer_id: str,
        item_ids: list[Any],
        async_mode: bool,
        version: int | None,
        user_id: str | None,
        *,
        idempotency_key: str | None = None,
        session: CallerTransaction | None = None,
    ) -> dict[str, Any]:
        """Delete many items."""
        payload = payloads.bulk_delete(customer_id, item_ids, version=version)
        return await self.submit(
            kind,
            Operation.BULK_DELETE,
            payload,
            api_key=None,
            async_mode=async_mode,
            user_id=user_id,
            idempotency_key=idempotency_key,
            session=session,
        )

    async def delete_all(
        self,
        kind: Kind,
        customer_id: str,
        async_mode: bool,
        user_id: str | None,
        *,
        idempotency_key: str | None = None,
        session: CallerTransaction | None = None,
    ) -> dict[str, Any]:
        """Delete every item of a customer (ordered by acceptance: no version applies)."""
        payload = payloads.delete_all(customer_id)
        return await self.submit(
            kind,
            Operation.DELETE_ALL,
            payload,
            api_key=None,
            async_mode=async_mode,
            user_id=user_id,
            idempotency_key=idempotency_key,
            session=session,
        )
