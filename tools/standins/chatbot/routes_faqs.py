"""FAQ endpoints: create, update, delete, import rows, list and CSV export."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from tools.standins.chatbot import fields as f
from tools.standins.chatbot.downloads import download
from tools.standins.chatbot.errors import ApiError, invalid
from tools.standins.chatbot.idempotency import Answer, Write, idempotent
from tools.standins.chatbot.state import STATE
from tools.standins.chatbot.store import Attachment, Customer, Faq, now

FAQ_FIELDS = frozenset(
    {"customer_id", "faq_id", "question", "answer", "category", "tags", "attachments"}
)
ROW_FIELDS = frozenset({"question", "answer", "category", "tags"})
MAX_IMPORT_ROWS = 1000


def _exists(faq_id: str) -> ApiError:
    return ApiError(409, "faq_exists", f"FAQ {faq_id!r} already exists", remembered=True)


def _missing(faq_id: str) -> ApiError:
    return ApiError(404, "faq_not_found", f"no FAQ {faq_id!r}", remembered=True)


async def _download(write: Write, specs: list[f.FileSpec] | None) -> list[Attachment] | None:
    if specs is None:
        return None
    # One at a time, in order: the first failure is the one reported.
    return [await download(write.state.http(), spec) for spec in specs]


@idempotent
async def create_faq(_request: web.Request, write: Write) -> Answer:
    """POST /v1/faqs with a client-assigned `faq_id`."""
    body = write.body
    f.only(body, FAQ_FIELDS)
    faq_id = f.required_string(body, "faq_id")
    question = f.required_string(body, "question")
    answer = f.required_string(body, "answer")
    category = f.string(body, "category")
    tags = f.string_list(body, "tags") or []
    specs = f.attachments(body)
    if faq_id in write.state.store.peek(write.customer_id).faqs:
        raise _exists(faq_id)
    attachments = await _download(write, specs) or []
    customer = write.state.store.customer(write.customer_id)
    # Checked again: another key may have created it while the attachments downloaded.
    if faq_id in customer.faqs:
        raise _exists(faq_id)
    faq = Faq(
        customer_id=write.customer_id,
        faq_id=faq_id,
        question=question,
        answer=answer,
        category=category,
        tags=tags,
        attachments=attachments,
        updated_at=now(),
    )
    customer.faqs[faq_id] = faq
    return 201, faq.describe()


@idempotent
async def update_faq(request: web.Request, write: Write) -> Answer:
    """PUT /v1/faqs/{faq_id}: the fields given replace the stored ones."""
    body = write.body
    faq_id = request.match_info["faq_id"]
    f.only(body, FAQ_FIELDS)
    if f.string(body, "faq_id") not in (None, faq_id):
        raise invalid(f"faq_id in the body ({body['faq_id']!r}) differs from the path ({faq_id!r})")
    question = f.string(body, "question", min_length=1)
    answer = f.string(body, "answer", min_length=1)
    category = f.string(body, "category")
    tags = f.string_list(body, "tags")
    specs = f.attachments(body)
    customer = write.state.store.peek(write.customer_id)
    if faq_id not in customer.faqs:
        raise _missing(faq_id)
    attachments = await _download(write, specs)
    faq = customer.faqs.get(faq_id)
    if faq is None:  # deleted while the attachments downloaded
        raise _missing(faq_id)
    faq.question = question if question is not None else faq.question
    faq.answer = answer if answer is not None else faq.answer
    faq.category = category if category is not None else faq.category
    faq.tags = tags if tags is not None else faq.tags
    faq.attachments = attachments if attachments is not None else faq.attachments
    faq.updated_at = now()
    return 200, faq.describe()


@idempotent
async def delete_faq(request: web.Request, write: Write) -> Answer:
    """DELETE /v1/faqs/{faq_id}."""
    faq_id = request.match_info["faq_id"]
    customer = write.state.store.peek(write.customer_id)
    if customer.faqs.pop(faq_id, None) is None:
        raise _missing(faq_id)
    return 200, {"deleted": 1}


@idempotent
async def delete_all(_request: web.Request, write: Write) -> Answer:
    """DELETE /v1/faqs."""
    customer = write.state.store.peek(write.customer_id)
    deleted = len(customer.faqs)
    customer.faqs.clear()
    return 200, {"deleted": deleted}


def _row(row: dict[str, Any], customer_id: str, updated_at: str) -> Faq:
    f.only(row, ROW_FIELDS, "the row")
    # The contract gives import rows no minLength, unlike FaqFields: empty strings pass.
    return Faq(
        customer_id=customer_id,
        faq_id=uuid.uuid4().hex,
        question=f.required_string(row, "question", min_length=0),
        answer=f.required_string(row, "answer", min_length=0),
        category=f.string(row, "category"),
        tags=f.string_list(row, "tags") or [],
        updated_at=updated_at,
    )


@idempotent
async def import_rows(_request: web.Request, write: Write) -> Answer:
    """POST /v1/faqs/import: all rows or none, each with a server-assigned id."""
    f.only(write.body, {"customer_id", "rows"})
    rows = f.objects(write.body, "rows", max_items=MAX_IMPORT_ROWS)
    stamp = now()
    faqs = []
    for index, row in enumerate(rows):
        with f.within(f"rows[{index}]"):
            faqs.append(_row(row, write.customer_id, stamp))
    customer = write.state.store.customer(write.customer_id)
    customer.faqs.update((faq.faq_id, faq) for faq in faqs)
    return 200, {"created": len(faqs)}


def _customer(request: web.Request) -> Customer:
    return request.app[STATE].store.peek(f.query_string(request, "customer_id"))


async def list_faqs(request: web.Request) -> web.Response:
    """GET /v1/faqs: in creation order, paged."""
    customer = _customer(request)
    page, size = f.page(request)
    faqs = list(customer.faqs.values())
    items = faqs[(page - 1) * size : page * size]
    return web.json_response({"items": [faq.describe() for faq in items], "total": len(faqs)})


async def export_faqs(request: web.Request) -> web.Response:
    """GET /v1/faqs/export: CSV with header question,answer,category,tags (tags `;`-joined)."""
    return web.Response(
        text=_customer(request).faqs_csv(), content_type="text/csv", charset="utf-8"
    )


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the FAQ endpoints (fixed paths before `{faq_id}`)."""
    router.add_post("/v1/faqs/import", import_rows)
    router.add_get("/v1/faqs/export", export_faqs)
    router.add_post("/v1/faqs", create_faq)
    router.add_get("/v1/faqs", list_faqs)
    router.add_delete("/v1/faqs", delete_all)
    router.add_put("/v1/faqs/{faq_id}", update_faq)
    router.add_delete("/v1/faqs/{faq_id}", delete_faq)
