"""The plan's service functions, backward compatible: `async_mode=True` queues, False writes now.

    await upsert_product(customer_id, product_data, with_embedding=True, api_key=None,
                         async_mode=True)
    -> {"status": "queued", "task_id": "..."}        (async_mode=True, the default)
    -> {"result": "created", "id": "...", ...}        (async_mode=False: the ES result)

Items carry their id in `data["id"]`. Every function takes an optional keyword `user_id`
(recorded in the task log); all but the delete-alls also take the caller's `version`, which
only refuses a write older than one sent before for the same item (see `versions.py`).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from services.core.config import Settings, get_settings
from services.core.db import session_factory
from services.core.enqueue import Enqueuer
from services.core.errors import WaitForInFlight
from services.core.search import apply, payloads
from services.core.search.catalog import ACCESSORIES, PRODUCTS, SERVICES, Kind, Operation
from services.core.search.runtime import make_writer
from services.core.search.writer import BulkProgress, CatalogWriter
from services.core.tasklog.repository import TaskLogRepository


class CatalogService:
    """Queues catalog writes as tracked tasks, or performs them at once."""

    def __init__(self, settings: Settings, enqueuer: Enqueuer | None = None) -> None:
        self._settings = settings
        self._enqueuer = enqueuer
        # One writer per event loop: the async client's sessions belong to the loop.
        self._writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CatalogWriter] = (
            weakref.WeakKeyDictionary()
        )

    def enqueuer(self) -> Enqueuer:
        """The enqueue path, built on first use."""
        if self._enqueuer is None:
            repo = TaskLogRepository(session_factory(self._settings.database_url))
            # The global app is built by importing its module: only once a write is enqueued.
            from services.core.celery_app import app as celery_app

            self._enqueuer = Enqueuer(repo=repo, celery=celery_app, settings=self._settings)
        return self._enqueuer

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
    ) -> dict[str, Any]:
        """Queue the write (async_mode) or perform it now."""
        if not async_mode:
            seq, payload = await asyncio.to_thread(
                self.enqueuer().reserve, kind.task_name(op), payload
            )
            progress = BulkProgress()
            while True:
                try:
                    return await apply.execute(
                        self._writer(),
                        kind,
                        op,
                        payload,
                        seq=seq,
                        api_key=api_key,
                        progress=progress,
                    )
                except WaitForInFlight as later:  # a delete-all's second sweep, done now
                    await asyncio.sleep(later.delay_s)
        accepted = await asyncio.to_thread(
            self.enqueuer().enqueue,
            kind.task_name(op),
            payload,
            user_id=user_id,
            customer_id=payload["customer_id"],
            secrets={"api_key": api_key} if api_key else None,
        )
        return {"status": "queued", "task_id": accepted.task_id}

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
            kind, Operation.UPSERT, payload, api_key=api_key, async_mode=async_mode, user_id=user_id
        )

    async def delete(
        self,
        kind: Kind,
        customer_id: str,
        item_id: Any,
        async_mode: bool,
        version: int | None,
        user_id: str | None,
    ) -> dict[str, Any]:
        """Delete one item."""
        payload = payloads.delete(customer_id, item_id, version=version)
        return await self.submit(
            kind, Operation.DELETE, payload, api_key=None, async_mode=async_mode, user_id=user_id
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
        )

    async def bulk_delete(
        self,
        kind: Kind,
        customer_id: str,
        item_ids: list[Any],
        async_mode: bool,
        version: int | None,
        user_id: str | None,
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
        )

    async def delete_all(
        self,
        kind: Kind,
        customer_id: str,
        async_mode: bool,
        user_id: str | None,
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
        )


_default: CatalogService | None = None


def catalog_service() -> CatalogService:
    """The service behind the module functions, built from the settings on first use."""
    global _default
    if _default is None:
        _default = CatalogService(get_settings())
    return _default


# The plan's functions, one per kind and operation, with its parameter names.


async def upsert_product(
    customer_id: str,
    product_data: dict[str, Any],
    with_embedding: bool = True,
    api_key: str | None = None,
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Upsert a product (queued by default)."""
    return await catalog_service().upsert(
        PRODUCTS, customer_id, product_data, with_embedding, api_key, async_mode, version, user_id
    )


async def upsert_service(
    customer_id: str,
    service_data: dict[str, Any],
    with_embedding: bool = True,
    api_key: str | None = None,
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Upsert a service (queued by default)."""
    return await catalog_service().upsert(
        SERVICES, customer_id, service_data, with_embedding, api_key, async_mode, version, user_id
    )


async def upsert_accessory(
    customer_id: str,
    accessory_data: dict[str, Any],
    with_embedding: bool = True,
    api_key: str | None = None,
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Upsert an accessory (queued by default)."""
    return await catalog_service().upsert(
        ACCESSORIES,
        customer_id,
        accessory_data,
        with_embedding,
        api_key,
        async_mode,
        version,
        user_id,
    )


async def delete_product(
    customer_id: str,
    product_id: Any,
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Delete a product."""
    return await catalog_service().delete(
        PRODUCTS, customer_id, product_id, async_mode, version, user_id
    )


async def delete_service(
    customer_id: str,
    service_id: Any,
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Delete a service."""
    return await catalog_service().delete(
        SERVICES, customer_id, service_id, async_mode, version, user_id
    )


async def delete_accessory(
    customer_id: str,
    accessory_id: Any,
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Delete an accessory."""
    return await catalog_service().delete(
        ACCESSORIES, customer_id, accessory_id, async_mode, version, user_id
    )


async def bulk_upsert_products(
    customer_id: str,
    products: list[dict[str, Any]],
    with_embedding: bool = True,
    api_key: str | None = None,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Upsert many products."""
    return await catalog_service().bulk_upsert(
        PRODUCTS, customer_id, products, with_embedding, api_key, async_mode, user_id
    )


async def bulk_upsert_services(
    customer_id: str,
    services: list[dict[str, Any]],
    with_embedding: bool = True,
    api_key: str | None = None,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Upsert many services."""
    return await catalog_service().bulk_upsert(
        SERVICES, customer_id, services, with_embedding, api_key, async_mode, user_id
    )


async def bulk_upsert_accessories(
    customer_id: str,
    accessories: list[dict[str, Any]],
    with_embedding: bool = True,
    api_key: str | None = None,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Upsert many accessories."""
    return await catalog_service().bulk_upsert(
        ACCESSORIES, customer_id, accessories, with_embedding, api_key, async_mode, user_id
    )


async def bulk_delete_products(
    customer_id: str,
    product_ids: list[Any],
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Delete many products."""
    return await catalog_service().bulk_delete(
        PRODUCTS, customer_id, product_ids, async_mode, version, user_id
    )


async def bulk_delete_services(
    customer_id: str,
    service_ids: list[Any],
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Delete many services."""
    return await catalog_service().bulk_delete(
        SERVICES, customer_id, service_ids, async_mode, version, user_id
    )


async def bulk_delete_accessories(
    customer_id: str,
    accessory_ids: list[Any],
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Delete many accessories."""
    return await catalog_service().bulk_delete(
        ACCESSORIES, customer_id, accessory_ids, async_mode, version, user_id
    )


async def delete_all_products(
    customer_id: str,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Delete all products of a customer."""
    return await catalog_service().delete_all(PRODUCTS, customer_id, async_mode, user_id)


async def delete_all_services(
    customer_id: str,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Delete all services of a customer."""
    return await catalog_service().delete_all(SERVICES, customer_id, async_mode, user_id)


async def delete_all_accessories(
    customer_id: str,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Delete all accessories of a customer."""
    return await catalog_service().delete_all(ACCESSORIES, customer_id, async_mode, user_id)
