"""The plan's service functions, backward compatible: `async_mode=True` queues, False writes now.

    await upsert_product(customer_id, product_data, with_embedding=True, api_key=None,
                         async_mode=True)
    -> {"status": "queued", "task_id": "..."}        (async_mode=True, the default)
    -> {"result": "created", "id": "...", ...}        (async_mode=False: the ES result)

Items carry their id in `data["id"]`. Every function takes the optional keywords `user_id`
(recorded in the task log), `idempotency_key` (a repeat of the same write returns the first
task), and `session`: the caller's SQLAlchemy Session, Connection, AsyncSession or
AsyncConnection, whose transaction then records the task, which is published only once that
transaction commits (`services/core/outbox`). All but the delete-alls also take the caller's
`version`, which only refuses a write older than one sent before for the same item
(see `versions.py`).
"""

from __future__ import annotations

from typing import Any

from services.core.config import get_settings
from services.core.outbox import CallerTransaction
from services.core.search.catalog import ACCESSORIES, PRODUCTS, SERVICES
from services.core.search.service import CatalogService

__all__ = ["CatalogService", "catalog_service"]


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
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Upsert a product (queued by default)."""
    return await catalog_service().upsert(
        PRODUCTS,
        customer_id,
        product_data,
        with_embedding,
        api_key,
        async_mode,
        version,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
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
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Upsert a service (queued by default)."""
    return await catalog_service().upsert(
        SERVICES,
        customer_id,
        service_data,
        with_embedding,
        api_key,
        async_mode,
        version,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
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
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
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
        idempotency_key=idempotency_key,
        session=session,
    )


async def delete_product(
    customer_id: str,
    product_id: Any,
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Delete a product."""
    return await catalog_service().delete(
        PRODUCTS,
        customer_id,
        product_id,
        async_mode,
        version,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )


async def delete_service(
    customer_id: str,
    service_id: Any,
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Delete a service."""
    return await catalog_service().delete(
        SERVICES,
        customer_id,
        service_id,
        async_mode,
        version,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )


async def delete_accessory(
    customer_id: str,
    accessory_id: Any,
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Delete an accessory."""
    return await catalog_service().delete(
        ACCESSORIES,
        customer_id,
        accessory_id,
        async_mode,
        version,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )


async def bulk_upsert_products(
    customer_id: str,
    products: list[dict[str, Any]],
    with_embedding: bool = True,
    api_key: str | None = None,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Upsert many products."""
    return await catalog_service().bulk_upsert(
        PRODUCTS,
        customer_id,
        products,
        with_embedding,
        api_key,
        async_mode,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )


async def bulk_upsert_services(
    customer_id: str,
    services: list[dict[str, Any]],
    with_embedding: bool = True,
    api_key: str | None = None,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Upsert many services."""
    return await catalog_service().bulk_upsert(
        SERVICES,
        customer_id,
        services,
        with_embedding,
        api_key,
        async_mode,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )


async def bulk_upsert_accessories(
    customer_id: str,
    accessories: list[dict[str, Any]],
    with_embedding: bool = True,
    api_key: str | None = None,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Upsert many accessories."""
    return await catalog_service().bulk_upsert(
        ACCESSORIES,
        customer_id,
        accessories,
        with_embedding,
        api_key,
        async_mode,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )


async def bulk_delete_products(
    customer_id: str,
    product_ids: list[Any],
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Delete many products."""
    return await catalog_service().bulk_delete(
        PRODUCTS,
        customer_id,
        product_ids,
        async_mode,
        version,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )


async def bulk_delete_services(
    customer_id: str,
    service_ids: list[Any],
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Delete many services."""
    return await catalog_service().bulk_delete(
        SERVICES,
        customer_id,
        service_ids,
        async_mode,
        version,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )


async def bulk_delete_accessories(
    customer_id: str,
    accessory_ids: list[Any],
    async_mode: bool = True,
    *,
    version: int | None = None,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Delete many accessories."""
    return await catalog_service().bulk_delete(
        ACCESSORIES,
        customer_id,
        accessory_ids,
        async_mode,
        version,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )


async def delete_all_products(
    customer_id: str,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Delete all products of a customer."""
    return await catalog_service().delete_all(
        PRODUCTS, customer_id, async_mode, user_id, idempotency_key=idempotency_key, session=session
    )


async def delete_all_services(
    customer_id: str,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Delete all services of a customer."""
    return await catalog_service().delete_all(
        SERVICES, customer_id, async_mode, user_id, idempotency_key=idempotency_key, session=session
    )


async def delete_all_accessories(
    customer_id: str,
    async_mode: bool = True,
    *,
    user_id: str | None = None,
    idempotency_key: str | None = None,
    session: CallerTransaction | None = None,
) -> dict[str, Any]:
    """Delete all accessories of a customer."""
    return await catalog_service().delete_all(
        ACCESSORIES,
        customer_id,
        async_mode,
        user_id,
        idempotency_key=idempotency_key,
        session=session,
    )
