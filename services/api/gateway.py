"""Synchronous reads from ChatbotMobile, with its failures as 502/503/504."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import HTTPException

from services.api.deps import Runtime
from services.core.chatbot.client import ChatbotRejected, ChatbotUnavailable

MESSAGES = {
    502: "ChatbotMobile answered with an error",
    503: "ChatbotMobile is unavailable; try again later",
    504: "ChatbotMobile did not answer in time; try again later",
}


def read(runtime: Runtime, path: str, **params: Any) -> httpx.Response:
    """GET from ChatbotMobile now; an HTTPException that says what went wrong if it fails."""
    try:
        return runtime.chatbot.read(path, **params)
    except ChatbotUnavailable as exc:
        headers = None
        if exc.retry_after_s is not None:
            headers = {"Retry-After": str(int(exc.retry_after_s))}
        raise HTTPException(
            exc.gateway_status, f"{MESSAGES[exc.gateway_status]} ({exc})", headers=headers
        ) from exc
    except ChatbotRejected as exc:
        detail = MESSAGES.get(exc.gateway_status, "not found")
        raise HTTPException(exc.gateway_status, f"{detail} ({exc})") from exc
