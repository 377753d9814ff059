"""Catalog writes: products, services and accessories, each queued as an `es` task."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import Field

from services.api.accept import accept
from services.api.deps import IdempotencyKey, PrincipalDep, RuntimeDep
from services.api.routing import ThreadedRoute
from services.api.schemas import CustomerField, CustomerQuery, QueuedResponse, Strict, errors
from services.api.validation import refuse_unstorable, unprocessable
from services.core.search import payloads
from services.core.search.catalog import Kind, Operation, kind_of
from services.core.search.fieldnames import field_name_problems
from services.core.secrecy import find_secret_paths
from services.core.storable import Path as Where

router = APIRouter(
    prefix="/api/v1",
    tags=["catalog"],
    route_class=ThreadedRoute,
    responses=errors(401, 403, 413, 503),
)

KindPath = Annotated[
    Literal["products", "services", "accessories"],
    Path(description="entity kind"),
]
ItemIdPath = Annotated[str, Path(pattern=payloads.ITEM_ID_PATTERN, max_length=256)]
Version = Annotated[int | None, Field(default=None, ge=0, le=2**62)]
EmbeddingsKey = Annotated[
    str | None,
    Header(alias="X-Embeddings-Api-Key", description="per-call key for the embeddings API"),
]


class UpsertBody(Strict):
    customer_id: CustomerField
    data: dict[str, Any]
    with_embedding: bool = False
    version: Version = None


class BulkItem(Strict):
    id: Annotated[str | int, Field(description="item id")]
    data: dict[str, Any]
    version: Version = None


class BulkUpsertBody(Strict):
    customer_id: CustomerField
    items: Annotated[list[BulkItem], Field(min_length=1)]
    with_embedding: bool = False


class BulkDeleteBody(Strict):
    customer_id: CustomerField
    ids: Annotated[list[str | int], Field(min_length=1)]
    version: Version = None


def _queue(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: str | None,
    kind: Kind,
    op: Operation,
    build: Any,
    request: dict[str, Any],
    *,
    checked: list[tuple[Where, Any]],
    api_key: str | None = None,
    where: tuple[str | int, ...] = ("body",),
) -> QueuedResponse:
    # What the log, an answer or Elasticsearch cannot hold first: the checks below recurse.
    refuse_unstorable(runtime.settings, checked)
    _refuse_secret_fields(request)
    _refuse_bad_field_names(request)
    try:
        payload = build()
    except ValueError as exc:
        raise unprocessable(where, str(exc)) from exc
    return accept(
        runtime,
        principal,
        kind.task_name(op),
        payload,
        request=request,
        idempotency_key=idempotency_key,
        secrets={"api_key": api_key} if api_key else None,
    )


def _refuse_secret_fields(request: dict[str, Any]) -> None:
    # Task payloads never carry secrets (they travel through the broker and the task log),
    # and from here a secret-looking field cannot be told from catalog data. Refuse it,
    # naming it, rather than store what may be a credential: the caller renames the field.
    # (The embeddings key has its own header and is sealed apart from the payload.)
    leaked = find_secret_paths(request)
    if leaked:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", *path),
                    "msg": "this field name looks like a secret (key, token, secret, password, "
                    "credential); catalog data may not carry secrets: rename the field",
                    "type": "value_error",
                }
                for path in leaked
            ]
        )


def _refuse_bad_field_names(request: dict[str, Any]) -> None:
    # Item data is spread into the Elasticsearch document: a name ES cannot map would fail
    # the task after the 202, so it is refused here, naming the field.
    located: list[tuple[tuple[str | int, ...], dict[str, Any]]] = []
    if isinstance(request.get("data"), dict):
        located.append((("body", "data"), request["data"]))
    for n, item in enumerate(request.get("items") or []):
        located.append((("body", "items", n, "data"), item["data"]))
    problems = [p for loc, data in located for p in field_name_problems(data, loc)]
    if problems:
        raise RequestValidationError(
            [{"loc": loc, "msg": msg, "type": "value_error"} for loc, msg in problems]
        )


def _check_bulk_size(runtime: RuntimeDep, count: int, field: str) -> None:
    limit = runtime.settings.bulk_max_items
    if count > limit:
        raise unprocessable(("body", field), f"at most {limit} items per request, got {count}")


@router.put("/{kind}/{item_id}", status_code=status.HTTP_202_ACCEPTED)
def upsert_item(
    kind: KindPath,
    item_id: ItemIdPath,
    body: UpsertBody,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    api_key: EmbeddingsKey = None,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue an upsert of one item."""
    if "id" in body.data and str(body.data["id"]) != item_id:
        raise unprocessable(("body", "data", "id"), f"data.id differs from the path id {item_id!r}")
    return _queue(
        runtime,
        principal,
        idempotency_key,
        kind_of(kind),
        Operation.UPSERT,
        lambda: payloads.upsert(
            body.customer_id,
            item_id,
            body.data,
            with_embedding=body.with_embedding,
            version=body.version,
        ),
        {"item_id": item_id, **body.model_dump()},
        checked=[(("body", "data"), body.data)],
        api_key=api_key,
    )


@router.delete("/{kind}/{item_id}", status_code=status.HTTP_202_ACCEPTED)
def delete_item(
    kind: KindPath,
    item_id: ItemIdPath,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    customer_id: CustomerQuery,
    version: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue a delete of one item."""
    return _queue(
        runtime,
        principal,
        idempotency_key,
        kind_of(kind),
        Operation.DELETE,
        lambda: payloads.delete(customer_id, item_id, version=version),
        {"item_id": item_id, "customer_id": customer_id, "version": version},
        checked=[],
    )


@router.post("/{kind}/bulk-upsert", status_code=status.HTTP_202_ACCEPTED)
def bulk_upsert(
    kind: KindPath,
    body: BulkUpsertBody,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    api_key: EmbeddingsKey = None,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue an upsert of many items of one customer."""
    _check_bulk_size(runtime, len(body.items), "items")
    return _queue(
        runtime,
        principal,
        idempotency_key,
        kind_of(kind),
        Operation.BULK_UPSERT,
        lambda: payloads.bulk_upsert(
            body.customer_id,
            [i.model_dump() for i in body.items],
            with_embedding=body.with_embedding,
        ),
        body.model_dump(),
        checked=[
            check
            for index, item in enumerate(body.items)
            for check in (
                (("body", "items", index, "id"), item.id),
                (("body", "items", index, "data"), item.data),
            )
        ],
        api_key=api_key,
        where=("body", "items"),
    )


@router.post("/{kind}/bulk-delete", status_code=status.HTTP_202_ACCEPTED)
def bulk_delete(
    kind: KindPath,
    body: BulkDeleteBody,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue a delete of many items of one customer."""
    _check_bulk_size(runtime, len(body.ids), "ids")
    return _queue(
        runtime,
        principal,
        idempotency_key,
        kind_of(kind),
        Operation.BULK_DELETE,
        lambda: payloads.bulk_delete(body.customer_id, body.ids, version=body.version),
        body.model_dump(),
        checked=[(("body", "ids", index), item_id) for index, item_id in enumerate(body.ids)],
        where=("body", "ids"),
    )


@router.delete("/{kind}", status_code=status.HTTP_202_ACCEPTED)
def delete_all(
    kind: KindPath,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    customer_id: CustomerQuery,
    version: Annotated[
        int | None, Query(description="not accepted: a delete-all is ordered by acceptance")
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue a delete of every item of a customer; it removes every write accepted before it."""
    if version is not None:
        raise unprocessable(
            ("query", "version"),
            "a delete-all takes no version: it removes every write accepted before it and "
            "none accepted after it",
        )
    return _queue(
        runtime,
        principal,
        idempotency_key,
        kind_of(kind),
        Operation.DELETE_ALL,
        lambda: payloads.delete_all(customer_id),
        {"customer_id": customer_id},
        checked=[],
    )
