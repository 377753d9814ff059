"""What each ChatbotMobile task does: one contract call (or a chunked series) per task.

Every write sends `Idempotency-Key`: the task id, or that id and the chunk number for imports,
so a retry after "applied, but the answer was lost" changes nothing. A redrive tries the keys
of the write's earlier incarnations first, then its own (`ctx.idempotency_keys`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.core import taskdefs as t
from services.core.chatbot.client import ChatbotClient, ChatbotRejected
from services.core.chatbot.faq_import import parse
from services.core.config import Settings
from services.core.errors import PermanentError
from services.core.secrecy import URL_CREDENTIALS, with_credentials
from services.core.storage import Storage, StoredFile
from services.core.tracking import TaskContext


@dataclass(frozen=True)
class HttpEnv:
    """What the ChatbotMobile tasks of one worker process share."""

    client: ChatbotClient
    storage: Storage
    settings: Settings

    def attachment(self, file: dict[str, Any]) -> dict[str, Any]:
        """A stored file as the contract's downloadable reference."""
        stored = StoredFile.from_payload(file)
        return {
            "file_url": self.storage.url_for(stored.ref, self.settings.file_url_ttl_s),
            "filename": stored.filename,
            "content_type": stored.content_type,
            "size": stored.size,
            "sha256": stored.sha256,
        }


Operation = Callable[[HttpEnv, TaskContext, dict[str, Any]], dict[str, Any]]


def _fields(payload: dict[str, Any], *names: str) -> dict[str, Any]:
    return {n: payload[n] for n in names if payload.get(n) is not None}


def upload_text(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    body = _fields(p, "customer_id", "title", "text", "source")
    return env.client.write("POST", "/v1/documents/text", ctx.idempotency_keys, json=body)


def upload_file(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    body = {**env.attachment(p["file"]), **_fields(p, "customer_id", "source")}
    return env.client.write("POST", "/v1/documents/file", ctx.idempotency_keys, json=body)


def upload_url(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    body = _fields(p, "customer_id", "url", "source")
    # The URL's `user:password` was sealed apart from the payload at acceptance.
    body["url"] = with_credentials(body["url"], ctx.secrets.get(URL_CREDENTIALS))
    return env.client.write("POST", "/v1/documents/url", ctx.idempotency_keys, json=body)


def delete_all_documents(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    params = {"customer_id": p["customer_id"]}
    return env.client.write("DELETE", "/v1/documents", ctx.idempotency_keys, params=params)


def delete_by_source(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    params = _fields(p, "customer_id", "source")
    return env.client.write(
        "DELETE", "/v1/documents/by-source", ctx.idempotency_keys, params=params
    )


def trigger_reindex(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    body = {"customer_id": p["customer_id"]}
    return env.client.write("POST", "/v1/graphrag/reindex", ctx.idempotency_keys, json=body)


def _faq_body(env: HttpEnv, p: dict[str, Any]) -> dict[str, Any]:
    body = _fields(p, "customer_id", "faq_id", "question", "answer", "category", "tags")
    if p.get("attachments"):
        body["attachments"] = [env.attachment(f) for f in p["attachments"]]
    return body


def faq_create(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    return env.client.write("POST", "/v1/faqs", ctx.idempotency_keys, json=_faq_body(env, p))


def faq_update(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    path = f"/v1/faqs/{p['faq_id']}"
    return env.client.write("PUT", path, ctx.idempotency_keys, json=_faq_body(env, p))


def faq_delete(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    try:
        return env.client.write(
            "DELETE",
            f"/v1/faqs/{p['faq_id']}",
            ctx.idempotency_keys,
            params={"customer_id": p["customer_id"]},
        )
    except ChatbotRejected as exc:
        if exc.upstream_status == 404:
            return {"result": "not_found", "faq_id": p["faq_id"]}
        raise


def faq_delete_all(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    params = {"customer_id": p["customer_id"]}
    return env.client.write("DELETE", "/v1/faqs", ctx.idempotency_keys, params=params)


def faq_import(env: HttpEnv, ctx: TaskContext, p: dict[str, Any]) -> dict[str, Any]:
    """Send the rows of a stored import file in chunks, resuming after the last one sent."""
    stored = StoredFile.from_payload(p["file"])
    with env.storage.open(stored.ref) as data:
        parsed = parse(data, p["format"], max_rows=env.settings.faq_import_max_rows)
    if parsed.errors:
        raise PermanentError(f"import file has invalid rows: {parsed.errors[:5]}")
    rows, size = parsed.rows, p["chunk_rows"]
    chunks = math.ceil(len(rows) / size)
    state = ctx.checkpoint or {}
    done, created = int(state.get("chunks_done", 0)), int(state.get("created", 0))
    ctx.save_progress(done=min(done * size, len(rows)), total=len(rows))
    for number in range(done, chunks):
        answer = env.client.write(
            "POST",
            "/v1/faqs/import",
            [f"{key}:{number}" for key in ctx.idempotency_keys],
            json={
                "customer_id": p["customer_id"],
                "rows": rows[number * size : (number + 1) * size],
            },
        )
        created += int(answer.get("created", 0))
        ctx.save_progress(
            checkpoint={"chunks_done": number + 1, "created": created},
            done=min((number + 1) * size, len(rows)),
            total=len(rows),
        )
    return {"rows": len(rows), "created": created, "chunks": chunks}


OPERATIONS: dict[str, Operation] = {
    t.DOC_UPLOAD_TEXT.name: upload_text,
    t.DOC_UPLOAD_FILE.name: upload_file,
    t.DOC_UPLOAD_URL.name: upload_url,
    t.DOC_DELETE_ALL.name: delete_all_documents,
    t.DOC_DELETE_BY_SOURCE.name: delete_by_source,
    t.DOC_TRIGGER_REINDEX.name: trigger_reindex,
    t.FAQ_CREATE.name: faq_create,
    t.FAQ_UPDATE.name: faq_update,
    t.FAQ_DELETE.name: faq_delete,
    t.FAQ_DELETE_ALL.name: faq_delete_all,
    t.FAQ_IMPORT.name: faq_import,
}
