"""The ChatbotMobile entry points for code refuse bad input, saying what is wrong, before
they store a file or touch the task log (these calls reach neither)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.core.chatbot import writes
from services.core.chatbot.writes import Upload

PDF = Upload(b"%PDF-1.4", "a.pdf", "application/pdf")
BAD: list[tuple[Callable[[], Awaitable[Any]], str]] = [
    (lambda: writes.doc_upload_text("bad id!", "text"), "customer_id"),
    (lambda: writes.doc_upload_text("c1", ""), "text must be a non-empty string"),
    (lambda: writes.doc_upload_text("c1", "x", title="t" * 501), "title is over 500"),
    (lambda: writes.doc_upload_url("c1", "ftp://example.com/x"), "http or https URL"),
    (lambda: writes.doc_delete_by_source("c1", ""), "source must be"),
    (
        lambda: writes.doc_upload_file("c1", Upload(b"MZ", "a.exe", "application/x-msdos")),
        "content type",
    ),
    (lambda: writes.faq_create("c1", "", "answer"), "question must be"),
    (lambda: writes.faq_create("c1", "q", "a", faq_id="no/slash"), "faq_id"),
    (lambda: writes.faq_create("c1", "q", "a", tags=[" "]), "tags must be"),
    (lambda: writes.faq_update("c1", "f1"), "give at least one of"),
    (lambda: writes.faq_delete("c1", "../x"), "faq_id"),
    (lambda: writes.faq_import("c1", Upload(b"x", "faqs.pdf", "application/pdf")), ".csv or .xlsx"),
]


@pytest.mark.parametrize(("call", "says"), BAD)
def test_bad_input_is_refused_with_what_is_wrong(
    call: Callable[[], Awaitable[Any]], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        asyncio.run(_awaited(call))


async def _awaited(call: Callable[[], Awaitable[Any]]) -> Any:
    return await call()
