"""ChatbotMobile's error shape, `{"error": {"code", "message"}}`, as data."""

from __future__ import annotations

from aiohttp import web


class ApiError(Exception):
    """An error answer; `remembered` ones are outcomes an idempotency key keeps for replay."""

    def __init__(self, status: int, code: str, message: str, *, remembered: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.remembered = remembered

    def body(self) -> dict[str, dict[str, str]]:
        """The JSON body of the answer."""
        return {"error": {"code": self.code, "message": self.message}}

    def response(self) -> web.Response:
        """The HTTP answer."""
        return web.json_response(self.body(), status=self.status)


def invalid(message: str) -> ApiError:
    """422 for a request the contract does not allow."""
    return ApiError(422, "validation_error", message)


def file_fetch_failed(message: str) -> ApiError:
    """502 for a file whose host could not be reached or failed (5xx): worth a retry."""
    return ApiError(502, "file_fetch_failed", message)


def file_unavailable(message: str) -> ApiError:
    """422 for a file that could not be downloaded or does not match what was declared."""
    return ApiError(422, "file_unavailable", message)
