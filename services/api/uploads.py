"""Accepting uploads: limits first (413/415, nothing stored), then storage, then the task."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, UploadFile, status

from services.api.accept import accept
from services.api.deps import Runtime
from services.api.schemas import QueuedResponse
from services.core.auth import Principal
from services.core.storage import FileTooLarge, StoredFile


def check_upload(
    runtime: Runtime, upload: UploadFile, allowed: frozenset[str] | None = None
) -> str:
    """The upload's content type if size and type are acceptable; else 413 or 415."""
    limit = runtime.settings.upload_max_bytes
    if upload.size is not None and upload.size > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"{upload.filename or 'file'} is {upload.size} bytes; the limit is {limit}",
        )
    content_type = (upload.content_type or "application/octet-stream").split(";")[0].strip()
    accepted = allowed if allowed is not None else runtime.settings.allowed_upload_types
    if content_type not in accepted:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"content type {content_type!r} is not accepted; "
            f"accepted: {', '.join(sorted(accepted))}",
        )
    return content_type


def store(runtime: Runtime, upload: UploadFile, content_type: str) -> StoredFile:
    """Store an upload that passed `check_upload`."""
    upload.file.seek(0)
    try:
        return runtime.storage.save(
            upload.file,
            filename=upload.filename or "file",
            content_type=content_type,
            max_bytes=runtime.settings.upload_max_bytes,
        )
    except FileTooLarge as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from exc


def queue_with_files(
    runtime: Runtime,
    principal: Principal,
    idempotency_key: str | None,
    task_name: str,
    files: list[StoredFile],
    build: Callable[[list[dict[str, Any]]], dict[str, Any]],
    request: dict[str, Any],
) -> QueuedResponse:
    """Record stored files under a new task id, then accept the task that uses them.

    The files' hashes join `request`, so a repeat with other file contents is a different
    request for the idempotency check.
    """
    task_id = str(uuid.uuid4())
    if files:
        runtime.stored_files.record(task_id, files)
    payload = build([f.to_payload() for f in files])
    return accept(
        runtime,
        principal,
        task_name,
        payload,
        request={**request, "files": [f.sha256 for f in files]},
        idempotency_key=idempotency_key,
        task_id=task_id,
    )
