"""Mobile FAQs in ChatbotMobile: writes (with attachments, imports) queued, reads answered now."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, UploadFile, status
from fastapi.responses import JSONResponse, Response

from services.api.accept import accept
from services.api.deps import IdempotencyKey, PrincipalDep, RuntimeDep, authorize
from services.api.gateway import read
from services.api.routing import ThreadedRoute
from services.api.schemas import CustomerForm, CustomerQuery, QueuedResponse, Text, errors
from services.api.uploads import check_upload, queue_with_files, store
from services.api.validation import unprocessable
from services.core import taskdefs as t
from services.core.chatbot.faq_import import ImportFileError, format_of
from services.core.chatbot.import_check import ImportCheckUnavailable, check_import
from services.core.ids import FAQ_ID_PATTERN

router = APIRouter(
    prefix="/api/v1",
    tags=["faqs"],
    route_class=ThreadedRoute,
    responses=errors(401, 403, 413, 415, 502, 503, 504),
)

FaqId = Annotated[str, Path(pattern=FAQ_ID_PATTERN)]
Files = Annotated[list[UploadFile], File(description="attachments")]
IMPORT_TYPES = frozenset(
    {
        "text/csv",
        "application/csv",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/octet-stream",
    }
)


class FaqQueuedResponse(QueuedResponse):
    """A queued FAQ write also names the FAQ it is about."""

    faq_id: str


def _tags(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    return [tag.strip() for tag in re.split(r"[,;]", raw) if tag.strip()]


def _queue_faq(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: str | None,
    task: str,
    faq_id: str,
    fields: dict[str, Any],
    files: list[UploadFile],
) -> FaqQueuedResponse:
    authorize(principal, fields["customer_id"])
    checked = [(f, check_upload(runtime, f)) for f in files]  # all limits before storing any
    stored = [store(runtime, f, content_type) for f, content_type in checked]
    given = {k: v for k, v in fields.items() if v is not None}
    queued = queue_with_files(
        runtime,
        principal,
        idempotency_key,
        task,
        stored,
        lambda refs: {**given, "faq_id": faq_id, **({"attachments": refs} if refs else {})},
        {**given, "faq_id": faq_id},
    )
    return FaqQueuedResponse(**queued.model_dump(), faq_id=faq_id)


@router.post("/mobile-faq", status_code=status.HTTP_202_ACCEPTED)
def create_faq(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    customer_id: CustomerForm,
    question: Annotated[Text, Form(min_length=1, max_length=1000)],
    answer: Annotated[Text, Form(min_length=1, max_length=10000)],
    category: Annotated[Text | None, Form(max_length=200)] = None,
    tags: Annotated[Text | None, Form(description="comma-separated")] = None,
    faq_id: Annotated[str | None, Form(pattern=FAQ_ID_PATTERN)] = None,
    files: Files = [],  # noqa: B006  (FastAPI copies defaults per request)
    idempotency_key: IdempotencyKey = None,
) -> FaqQueuedResponse:
    """Queue a new FAQ; its id is given or assigned now and returned."""
    fields = {
        "customer_id": customer_id,
        "question": question,
        "answer": answer,
        "category": category,
        "tags": _tags(tags),
    }
    # Without a given faq_id, a repeat under the same Idempotency-Key must find the same
    # request: derive the id from the key rather than drawing a new one.
    new_id = faq_id or (
        uuid.uuid5(uuid.NAMESPACE_URL, f"{customer_id}/{idempotency_key}").hex
        if idempotency_key
        else uuid.uuid4().hex
    )
    return _queue_faq(runtime, principal, idempotency_key, t.FAQ_CREATE.name, new_id, fields, files)


@router.put("/mobile-faq/{faq_id}", status_code=status.HTTP_202_ACCEPTED)
def update_faq(
    faq_id: FaqId,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    customer_id: CustomerForm,
    question: Annotated[Text | None, Form(min_length=1, max_length=1000)] = None,
    answer: Annotated[Text | None, Form(min_length=1, max_length=10000)] = None,
    category: Annotated[Text | None, Form(max_length=200)] = None,
    tags: Annotated[Text | None, Form(description="comma-separated")] = None,
    files: Files = [],  # noqa: B006
    idempotency_key: IdempotencyKey = None,
) -> FaqQueuedResponse:
    """Queue changes to an FAQ: the fields given replace the stored ones."""
    fields = {"question": question, "answer": answer, "category": category, "tags": _tags(tags)}
    if all(v is None for v in fields.values()) and not files:
        raise unprocessable(
            ("body",), "give at least one of question, answer, category, tags or files"
        )
    fields["customer_id"] = customer_id
    return _queue_faq(runtime, principal, idempotency_key, t.FAQ_UPDATE.name, faq_id, fields, files)


@router.delete("/mobile-faq/{faq_id}", status_code=status.HTTP_202_ACCEPTED)
def delete_faq(
    faq_id: FaqId,
    customer_id: CustomerQuery,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> FaqQueuedResponse:
    """Queue deleting one FAQ."""
    payload = {"customer_id": customer_id, "faq_id": faq_id}
    queued = accept(
        runtime,
        principal,
        t.FAQ_DELETE.name,
        payload,
        request=payload,
        idempotency_key=idempotency_key,
    )
    return FaqQueuedResponse(**queued.model_dump(), faq_id=faq_id)


@router.delete("/mobile-faqs", status_code=status.HTTP_202_ACCEPTED)
def delete_all_faqs(
    customer_id: CustomerQuery,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> QueuedResponse:
    """Queue deleting every FAQ of a customer."""
    payload = {"customer_id": customer_id}
    return accept(
        runtime,
        principal,
        t.FAQ_DELETE_ALL.name,
        payload,
        request=payload,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/mobile-faq/import",
    status_code=status.HTTP_202_ACCEPTED,
    responses={422: {"description": "invalid rows, each with its row number and reason"}},
    # The import's own types (a spreadsheet or CSV), not UPLOAD_ALLOWED_TYPES.
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "encoding": {"file": {"contentType": ", ".join(sorted(IMPORT_TYPES))}}
                }
            }
        }
    },
)
def import_faqs(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    customer_id: CustomerForm,
    file: Annotated[
        UploadFile, File(description="CSV or XLSX: question, answer[, category, tags]")
    ],
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Validate every row now; queue the import only if all rows are valid."""
    authorize(principal, customer_id)
    content_type = check_upload(runtime, file, IMPORT_TYPES)
    try:
        fmt = format_of(file.filename or "", content_type)
        file.file.seek(0)
        # Parsed in a child process within the FAQ_IMPORT_* bounds, not in this thread.
        checked = check_import(file.file.read(), fmt, runtime.settings)
    except ImportFileError as exc:
        raise unprocessable(("body", "file"), str(exc)) from exc
    except ImportCheckUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"{exc}; try again",
            headers={"Retry-After": "1"},
        ) from exc
    if checked.errors:
        # Each bad row is one error at ("body", "file", row); `errors` keeps the row list.
        return JSONResponse(
            {
                "detail": [
                    {"loc": ["body", "file", e["row"]], "msg": e["reason"], "type": "value_error"}
                    for e in checked.errors
                ],
                "errors": checked.errors,
            },
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    stored = store(runtime, file, content_type)
    return queue_with_files(
        runtime,
        principal,
        idempotency_key,
        t.FAQ_IMPORT.name,
        [stored],
        lambda files: {
            "customer_id": customer_id,
            "file": files[0],
            "format": fmt,
            "rows": checked.rows,
            "chunk_rows": runtime.settings.faq_import_chunk_rows,
        },
        {"customer_id": customer_id},
    )


@router.get("/mobile-faqs")
def list_faqs(
    customer_id: CustomerQuery,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """The customer's FAQs, from ChatbotMobile now."""
    authorize(principal, customer_id)
    return read(runtime, "/v1/faqs", customer_id=customer_id, page=page, page_size=page_size).json()


@router.get("/mobile-faq/export")
def export_faqs(
    customer_id: CustomerQuery, runtime: RuntimeDep, principal: PrincipalDep
) -> Response:
    """All FAQs as CSV, from ChatbotMobile now."""
    authorize(principal, customer_id)
    upstream = read(runtime, "/v1/faqs/export", customer_id=customer_id)
    return Response(
        upstream.content,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="faqs-{customer_id}.csv"'},
    )
