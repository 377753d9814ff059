"""Document endpoints: text, file and URL documents, lists, deletes, GraphRAG reindex."""

from __future__ import annotations

import uuid

from aiohttp import web

from tools.standins.chatbot import fields as f
from tools.standins.chatbot.downloads import download
from tools.standins.chatbot.idempotency import Answer, Write, idempotent
from tools.standins.chatbot.state import STATE
from tools.standins.chatbot.store import Document, now

TEXT_FIELDS = frozenset({"customer_id", "title", "text", "source"})
FILE_FIELDS = frozenset(
    {"customer_id", "file_url", "filename", "content_type", "size", "sha256", "source"}
)
URL_FIELDS = frozenset({"customer_id", "url", "source"})


def _source(write: Write) -> str | None:
    # Non-empty: an empty source could never be named to DELETE /v1/documents/by-source.
    return f.string(write.body, "source", min_length=1)


def _add(write: Write, document: Document) -> Answer:
    write.state.store.customer(write.customer_id).documents[document.document_id] = document
    return 201, document.describe()


@idempotent
async def add_text(_request: web.Request, write: Write) -> Answer:
    """POST /v1/documents/text."""
    f.only(write.body, TEXT_FIELDS)
    text = f.required_string(write.body, "text")
    title = f.string(write.body, "title")
    source = _source(write)
    document_id = uuid.uuid4().hex
    document = Document(
        document_id=document_id,
        customer_id=write.customer_id,
        kind="text",
        source=source or f"text:{title or document_id}",
        created_at=now(),
        title=title,
        text=text,
    )
    return _add(write, document)


@idempotent
async def add_file(_request: web.Request, write: Write) -> Answer:
    """POST /v1/documents/file: downloads `file_url` and checks the declared size and sha256."""
    f.only(write.body, FILE_FIELDS)
    spec = f.file_spec(write.body)
    source = _source(write)
    fetched = await download(write.state.http(), spec)
    document = Document(
        document_id=uuid.uuid4().hex,
        customer_id=write.customer_id,
        kind="file",
        source=source or f"file:{spec.filename}",
        created_at=now(),
        filename=spec.filename,
        content_type=spec.content_type,
        size=fetched.size,
        sha256=fetched.sha256,
    )
    return _add(write, document)


@idempotent
async def add_url(_request: web.Request, write: Write) -> Answer:
    """POST /v1/documents/url (the page is not fetched: see the module docstring)."""
    f.only(write.body, URL_FIELDS)
    url = f.uri(write.body, "url")
    source = _source(write)
    document = Document(
        document_id=uuid.uuid4().hex,
        customer_id=write.customer_id,
        kind="url",
        source=source or f"url:{url}",
        created_at=now(),
        url=url,
    )
    return _add(write, document)


async def list_documents(request: web.Request) -> web.Response:
    """GET /v1/documents: newest first, paged."""
    customer = request.app[STATE].store.peek(f.query_string(request, "customer_id"))
    page, size = f.page(request)
    newest_first = list(reversed(customer.documents.values()))
    items = newest_first[(page - 1) * size : page * size]
    return web.json_response(
        {"items": [doc.describe() for doc in items], "total": len(newest_first)}
    )


@idempotent
async def delete_all(_request: web.Request, write: Write) -> Answer:
    """DELETE /v1/documents."""
    return 200, {"deleted": write.state.store.peek(write.customer_id).delete_documents()}


@idempotent
async def delete_by_source(request: web.Request, write: Write) -> Answer:
    """DELETE /v1/documents/by-source?source=..."""
    source = f.query_string(request, "source")
    customer = write.state.store.peek(write.customer_id)
    return 200, {"deleted": customer.delete_documents(source)}


async def list_originals(request: web.Request) -> web.Response:
    """GET /v1/documents/originals: uploaded files and URLs, in upload order."""
    customer = request.app[STATE].store.peek(f.query_string(request, "customer_id"))
    items = [doc.original() for doc in customer.documents.values() if doc.kind != "text"]
    return web.json_response({"items": items})


async def list_sources(request: web.Request) -> web.Response:
    """GET /v1/documents/sources."""
    customer = request.app[STATE].store.peek(f.query_string(request, "customer_id"))
    return web.json_response({"sources": customer.sources()})


@idempotent
async def reindex(_request: web.Request, write: Write) -> Answer:
    """POST /v1/graphrag/reindex: counted per customer; the job never runs."""
    f.only(write.body, {"customer_id"})
    write.state.store.customer(write.customer_id).reindex += 1
    return 202, {"job_id": uuid.uuid4().hex, "status": "queued"}


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the document endpoints."""
    router.add_post("/v1/documents/text", add_text)
    router.add_post("/v1/documents/file", add_file)
    router.add_post("/v1/documents/url", add_url)
    router.add_get("/v1/documents", list_documents)
    router.add_delete("/v1/documents", delete_all)
    router.add_delete("/v1/documents/by-source", delete_by_source)
    router.add_get("/v1/documents/originals", list_originals)
    router.add_get("/v1/documents/sources", list_sources)
    router.add_post("/v1/graphrag/reindex", reindex)
