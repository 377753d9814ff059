"""What code hands us for ChatbotMobile, made ready to queue: checked, files stored.

The entry points of `writes` build a task's payload with these checks (the API's rules, as
ValueErrors that say what is wrong: nothing is stored or queued) and queue it through
`ChatbotWrites`.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Unpack

from services.core import taskdefs as t
from services.core.chatbot.faq_import import format_of
from services.core.chatbot.import_check import check_import
from services.core.config import Settings
from services.core.db import session_factory
from services.core.enqueue import Enqueuer
from services.core.ids import CUSTOMER_ID_PATTERN, FAQ_ID_PATTERN
from services.core.outbox.queuing import QueueOptions, Queuing
from services.core.storage import StoredFile, make_storage
from services.core.storage.records import StoredFiles

CUSTOMER = re.compile(CUSTOMER_ID_PATTERN)
FAQ = re.compile(FAQ_ID_PATTERN)


@dataclass(frozen=True)
class Upload:
    """A file to send along: its bytes, name and content type."""

    data: bytes
    filename: str
    content_type: str


def check_id(kind: str, value: str, pattern: re.Pattern[str]) -> str:
    """A valid customer or FAQ id, or ValueError."""
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{kind} {value!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return value


def check_text(name: str, value: str | None, limit: int, *, required: bool = True) -> str | None:
    """A non-empty text of at most `limit` characters (None when optional and not given)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"{name} is over {limit} characters")
    return value


class ChatbotWrites:
    """Queues ChatbotMobile writes for code (see the module doc)."""

    def __init__(self, settings: Settings, enqueuer: Enqueuer | None = None) -> None:
        self.settings = settings
        self._queuing = Queuing(settings, enqueuer)

    async def queue(
        self,
        task: t.TaskSpec,
        payload: dict[str, Any],
        *,
        task_id: str | None = None,
        **options: Unpack[QueueOptions],
    ) -> dict[str, Any]:
        """Queue one write whose payload was checked (fields that are None left out)."""
        accepted = await self._queuing.queue(
            task.name,
            {k: v for k, v in payload.items() if v is not None},
            task_id=task_id,
            **options,
        )
        return {"status": "queued", "task_id": accepted.task_id}

    async def store(self, uploads: Sequence[Upload]) -> tuple[str, list[dict[str, Any]]]:
        """Store files (every limit checked before any is stored) under a new task id."""
        settings = self.settings
        for upload in uploads:
            if len(upload.data) > settings.upload_max_bytes:
                raise ValueError(
                    f"{upload.filename} is {len(upload.data)} bytes; "
                    f"the limit is {settings.upload_max_bytes}"
                )
            if upload.content_type not in settings.allowed_upload_types:
                raise ValueError(f"content type {upload.content_type!r} is not accepted")
        task_id = str(uuid.uuid4())
        stored = await asyncio.to_thread(self._save, task_id, uploads)
        return task_id, [f.to_payload() for f in stored]

    def _save(self, task_id: str, uploads: Sequence[Upload]) -> list[StoredFile]:
        storage = make_storage(self.settings)
        stored = [
            storage.save(
                io.BytesIO(u.data),
                filename=u.filename,
                content_type=u.content_type,
                max_bytes=self.settings.upload_max_bytes,
            )
            for u in uploads
        ]
        if stored:
            StoredFiles(session_factory(self.settings.database_url)).record(task_id, stored)
        return stored

    async def faq_import_payload(self, customer_id: str, upload: Upload) -> dict[str, Any]:
        """Check every row of an import file now (in a child process, within the limits)."""
        fmt = format_of(upload.filename, upload.content_type)
        checked = await asyncio.to_thread(check_import, upload.data, fmt, self.settings)
        if checked.errors:
            raise ValueError(f"{len(checked.errors)} invalid row(s): {checked.errors[:20]}")
        return {
            "customer_id": customer_id,
            "format": fmt,
            "rows": checked.rows,
            "chunk_rows": self.settings.faq_import_chunk_rows,
        }
