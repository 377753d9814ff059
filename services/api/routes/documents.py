"""Documents in ChatbotMobile: writes are queued on `http`, reads are answered now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from pydantic import Field, HttpUrl

from services.api.accept import accept
from services.api.deps import IdempotencyKey, PrincipalDep, RuntimeDep, authorize
from services.api.gateway import read
from services.api.routing import ThreadedRoute
from services.api.schemas import CustomerField, CustomerQuery, QueuedResponse, Strict, Text, errors
from services.api.uploads import check_upload, queue_with_files, store
from services.core import taskdefs as t
from services.core.chatbot.sources import file_source, text_source, url_source
from services.core.ids import CUSTOMER_ID_PATTERN
from services.core.secrecy import URL_CREDENTIALS, split_credentials

router = APIRouter(
    prefix="/api/v1",
    tags=["documents"],
    route_class=ThreadedRoute,
    responses=errors(401, 403, 413, 415, 502, 503, 504),
)

Source = Annotated[Text | None, Field(default=None, min_length=1, max_length=500)]


class TextBody(Strict):
    customer_id: CustomerField
    text: Annotated[Text, Field(min_length=1)]
    title: Annotated[Text | None, Field(default=None, max_length=500)] = None
    source: Source = None


class UrlBody(Strict):
    customer_id: CustomerField
    url: HttpUrl
    source: Source = None


class CustomerBody(Strict):
    customer_id: CustomerField


def _queue(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: str | None,
    task: str,
    payload: dict[str, Any],
) -> QueuedResponse:
    return accept(
        runtime, principal, task, payload, request=payload, idempotency_key=idempotency_key
    )


@router.post("/documents/upload-text", status_code=status.HTTP_202_ACCEPTED)
def upload_text(
    body: TextBody,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue a text document."""
    if len(body.text) > runtime.settings.upload_text_max_chars:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"text is over {runtime.settings.upload_text_max_chars} characters; "
            "upload it as a file",
        )
    payload = body.model_dump(exclude_none=True)
    source = text_source(body.source, body.title)
    if source is not None:
        payload["source"] = source
    return _queue(runtime, principal, idempotency_key, t.DOC_UPLOAD_TEXT.name, payload)


@router.post("/documents/upload-file", status_code=status.HTTP_202_ACCEPTED)
def upload_file(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="the document")],
    customer_id: Annotated[str, Form(pattern=CUSTOMER_ID_PATTERN)],
    source: Annotated[Text | None, Form(min_length=1, max_length=500)] = None,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Store the file, then queue its upload; only its reference goes into the task."""
    authorize(principal, customer_id)
    content_type = check_upload(runtime, file)
    stored = store(runtime, file, content_type)
    return queue_with_files(
        runtime,
        principal,
        idempotency_key,
        t.DOC_UPLOAD_FILE.name,
        [stored],
        lambda files: {
            "customer_id": customer_id,
            "file": files[0],
            "source": file_source(source, files[0]["filename"]),
        },
        {"customer_id": customer_id, "source": source, "filename": file.filename},
    )


@router.post("/documents/upload-url", status_code=status.HTTP_202_ACCEPTED)
def upload_url(
    body: UrlBody,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue a document to be fetched from a URL."""
    payload = body.model_dump(mode="json", exclude_none=True)
    # `user:password@` in the URL is a secret: sealed apart from the payload (the task log,
    # the broker message, status answers), put back by the worker for ChatbotMobile.
    payload["url"], credentials = split_credentials(payload["url"])
    # Filed under its URL (without the credentials) unless the caller names a source.
    payload["source"] = url_source(body.source, payload["url"])
    return accept(
        runtime,
        principal,
        t.DOC_UPLOAD_URL.name,
        payload,
        request=payload,
        idempotency_key=idempotency_key,
        secrets={URL_CREDENTIALS: credentials} if credentials else None,
    )


@router.delete("/documents/delete-all", status_code=status.HTTP_202_ACCEPTED)
def delete_all(
    customer_id: CustomerQuery,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue deleting every document of a customer."""
    payload = {"customer_id": customer_id}
    return _queue(runtime, principal, idempotency_key, t.DOC_DELETE_ALL.name, payload)


@router.delete("/documents/delete-by-source", status_code=status.HTTP_202_ACCEPTED)
def delete_by_source(
    customer_id: CustomerQuery,
    source: Annotated[Text, Query(min_length=1, max_length=500)],
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue deleting the documents of one source."""
    payload = {"customer_id": customer_id, "source": source}
    return _queue(runtime, principal, idempotency_key, t.DOC_DELETE_BY_SOURCE.name, payload)


@router.post("/documents/reindex", status_code=status.HTTP_202_ACCEPTED)
def reindex(
    body: CustomerBody,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue a GraphRAG reindex."""
    payload = body.model_dump()
    return _queue(runtime, principal, idempotency_key, t.DOC_TRIGGER_REINDEX.name, payload)


Page = Annotated[int, Query(ge=1)]
PageSize = Annotated[int, Query(ge=1, le=500)]


@router.get("/documents/list")
def list_documents(
    customer_id: CustomerQuery,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    page: Page = 1,
    page_size: PageSize = 50,
) -> Any:
    """The customer's documents, from ChatbotMobile now."""
    authorize(principal, customer_id)
    return read(
        runtime, "/v1/documents", customer_id=customer_id, page=page, page_size=page_size
    ).json()


@router.get("/documents-original/list")
def list_originals(customer_id: CustomerQuery, runtime: RuntimeDep, principal: PrincipalDep) -> Any:
    """The originals as uploaded, from ChatbotMobile now."""
    authorize(principal, customer_id)
    return read(runtime, "/v1/documents/originals", customer_id=customer_id).json()


@router.get("/documents/sources")
def list_sources(customer_id: CustomerQuery, runtime: RuntimeDep, principal: PrincipalDep) -> Any:
    """Sources and their document counts, from ChatbotMobile now."""
    authorize(principal, customer_id)
    return read(runtime, "/v1/documents/sources", customer_id=customer_id).json()
