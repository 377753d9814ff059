"""The plan's ChatbotMobile task entry points, for code: queue a document or FAQ write.

    await faq_create("c1", "Opening hours?", "9 to 5")    -> {"status": "queued", "task_id": ...,
                                                              "faq_id": ...}
    await doc_upload_text("c1", "Returns are free.", source="policies", session=db)

One function per task of the plan (`doc_upload_text` ... `faq_import`), each checking its
input as the API does (ValueError saying what is wrong; nothing stored or queued) and
queueing the task; ChatbotMobile writes are always queued. Every function takes the optional
keywords `user_id`, `idempotency_key` and `session`: the caller's SQLAlchemy Session,
Connection, AsyncSession or AsyncConnection, whose transaction then records the task, which
is published once it commits (`services/core/outbox`). Files are stored first (outside the
caller's transaction: storage is not transactional; a file whose task was rolled back is
removed by the stored-files cleanup) and only their reference travels with the task.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any, Unpack

from services.core import taskdefs as t
from services.core.chatbot.intake import (
    CUSTOMER,
    FAQ,
    ChatbotWrites,
    Upload,
    check_id,
    check_text,
)
from services.core.chatbot.sources import file_source, text_source, url_source
from services.core.config import get_settings
from services.core.outbox.queuing import QueueOptions

__all__ = [
    "ChatbotWrites",
    "Upload",
    "chatbot_writes",
    "doc_delete_all",
    "doc_delete_by_source",
    "doc_trigger_reindex",
    "doc_upload_file",
    "doc_upload_text",
    "doc_upload_url",
    "faq_create",
    "faq_delete",
    "faq_delete_all",
    "faq_import",
    "faq_update",
]

_default: ChatbotWrites | None = None


def chatbot_writes() -> ChatbotWrites:
    """The service behind the module functions, built from the settings on first use."""
    global _default
    if _default is None:
        _default = ChatbotWrites(get_settings())
    return _default


async def doc_upload_text(
    customer_id: str,
    text: str,
    *,
    title: str | None = None,
    source: str | None = None,
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Queue a text document."""
    writes = chatbot_writes()
    payload = {
        "customer_id": check_id("customer_id", customer_id, CUSTOMER),
        "text": check_text("text", text, writes.settings.upload_text_max_chars),
        "title": check_text("title", title, 500, required=False),
        # The source ChatbotMobile files it under, named now (`chatbot.sources`).
        "source": text_source(check_text("source", source, 500, required=False), title),
    }
    return await writes.queue(t.DOC_UPLOAD_TEXT, payload, **options)


async def doc_upload_url(
    customer_id: str,
    url: str,
    *,
    source: str | None = None,
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Queue a document ChatbotMobile fetches from an http(s) URL."""
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
        raise ValueError(f"url {url!r} must be an http or https URL")
    payload = {
        "customer_id": check_id("customer_id", customer_id, CUSTOMER),
        "url": url,
        "source": url_source(check_text("source", source, 500, required=False), url),
    }
    writes = chatbot_writes()
    return await writes.queue(t.DOC_UPLOAD_URL, payload, **options)


async def doc_upload_file(
    customer_id: str,
    file: Upload,
    *,
    source: str | None = None,
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Store a document, then queue its upload (only its reference travels)."""
    customer_id = check_id("customer_id", customer_id, CUSTOMER)
    source = check_text("source", source, 500, required=False)
    writes = chatbot_writes()
    task_id, files = await writes.store([file])
    payload = {
        "customer_id": customer_id,
        "file": files[0],
        "source": file_source(source, files[0]["filename"]),
    }
    return await writes.queue(t.DOC_UPLOAD_FILE, payload, **options, task_id=task_id)


async def doc_delete_all(
    customer_id: str,
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Queue deleting every document of a customer."""
    payload = {"customer_id": check_id("customer_id", customer_id, CUSTOMER)}
    writes = chatbot_writes()
    return await writes.queue(t.DOC_DELETE_ALL, payload, **options)


async def doc_delete_by_source(
    customer_id: str,
    source: str,
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Queue deleting the documents of one source."""
    payload = {
        "customer_id": check_id("customer_id", customer_id, CUSTOMER),
        "source": check_text("source", source, 500),
    }
    writes = chatbot_writes()
    return await writes.queue(t.DOC_DELETE_BY_SOURCE, payload, **options)


async def doc_trigger_reindex(
    customer_id: str,
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Queue a GraphRAG reindex."""
    payload = {"customer_id": check_id("customer_id", customer_id, CUSTOMER)}
    writes = chatbot_writes()
    return await writes.queue(t.DOC_TRIGGER_REINDEX, payload, **options)


async def faq_create(
    customer_id: str,
    question: str,
    answer: str,
    *,
    category: str | None = None,
    tags: list[str] | None = None,
    faq_id: str | None = None,
    files: Sequence[Upload] = (),
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Queue a new FAQ; its id is given or drawn now, and returned as `faq_id`."""
    customer_id = check_id("customer_id", customer_id, CUSTOMER)
    if faq_id is None:
        # A repeat under the same idempotency key must be the same request: same id.
        given = options.get("idempotency_key")
        key = f"{customer_id}/{given}"
        faq_id = uuid.uuid5(uuid.NAMESPACE_URL, key).hex if given else uuid.uuid4().hex
    fields = {
        "question": check_text("question", question, 1000),
        "answer": check_text("answer", answer, 10000),
        "category": check_text("category", category, 200, required=False),
        "tags": _tags(tags),
    }
    return await _faq(t.FAQ_CREATE, customer_id, faq_id, fields, files, options)


async def faq_update(
    customer_id: str,
    faq_id: str,
    *,
    question: str | None = None,
    answer: str | None = None,
    category: str | None = None,
    tags: list[str] | None = None,
    files: Sequence[Upload] = (),
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Queue changes to an FAQ: the fields given replace the stored ones."""
    fields = {
        "question": check_text("question", question, 1000, required=False),
        "answer": check_text("answer", answer, 10000, required=False),
        "category": check_text("category", category, 200, required=False),
        "tags": _tags(tags),
    }
    if all(v is None for v in fields.values()) and not files:
        raise ValueError("give at least one of question, answer, category, tags or files")
    customer_id = check_id("customer_id", customer_id, CUSTOMER)
    return await _faq(t.FAQ_UPDATE, customer_id, faq_id, fields, files, options)


async def faq_delete(
    customer_id: str,
    faq_id: str,
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Queue deleting one FAQ."""
    payload = {
        "customer_id": check_id("customer_id", customer_id, CUSTOMER),
        "faq_id": check_id("faq_id", faq_id, FAQ),
    }
    writes = chatbot_writes()
    queued = await writes.queue(t.FAQ_DELETE, payload, **options)
    return {**queued, "faq_id": faq_id}


async def faq_delete_all(
    customer_id: str,
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Queue deleting every FAQ of a customer."""
    payload = {"customer_id": check_id("customer_id", customer_id, CUSTOMER)}
    writes = chatbot_writes()
    return await writes.queue(t.FAQ_DELETE_ALL, payload, **options)


async def faq_import(
    customer_id: str,
    file: Upload,
    **options: Unpack[QueueOptions],
) -> dict[str, Any]:
    """Check every row of a CSV or XLSX file now, then store it and queue the import."""
    customer_id = check_id("customer_id", customer_id, CUSTOMER)
    writes = chatbot_writes()
    payload = await writes.faq_import_payload(customer_id, file)
    task_id, files = await writes.store([file])
    payload["file"] = files[0]
    return await writes.queue(t.FAQ_IMPORT, payload, **options, task_id=task_id)


def _tags(tags: list[str] | None) -> list[str] | None:
    if tags is None:
        return None
    if not all(isinstance(tag, str) and tag.strip() for tag in tags):
        raise ValueError("tags must be non-empty strings")
    return [tag.strip() for tag in tags]


async def _faq(
    task: t.TaskSpec,
    customer_id: str,
    faq_id: str,
    fields: dict[str, Any],
    files: Sequence[Upload],
    options: QueueOptions,
) -> dict[str, Any]:
    writes = chatbot_writes()
    faq_id = check_id("faq_id", faq_id, FAQ)
    task_id, stored = await writes.store(files)
    payload = {"customer_id": customer_id, **fields, "faq_id": faq_id}
    if stored:
        payload["attachments"] = stored
    queued = await writes.queue(task, payload, **options, task_id=task_id)
    return {**queued, "faq_id": faq_id}
