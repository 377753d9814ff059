"""Refusals at the edge: every one a 422 `{"detail": [{"loc", "msg", "type"}]}` naming the field.

One shape for every 422 (FastAPI's own for request validation), so that a client reads one
list of problems whatever refused the request. Error answers never echo the input beyond a
short excerpt: a 60 MB body must not come back in its own refusal, and an input that cannot
be encoded (a lone surrogate) must not break the answer that refuses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, StatementError

from services.core.config import Settings
from services.core.storable import Path, excerpt, problems, size_problem

Loc = tuple[str | int, ...]


def unprocessable(loc: Loc, msg: str) -> RequestValidationError:
    """A 422 naming the field at `loc` and what is wrong with it."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error"}])


def refuse_unstorable(settings: Settings, values: Iterable[tuple[Path, Any]]) -> None:
    """422 for caller data the task log, an answer or a downstream cannot hold.

    Each value (an item's `data`, an id) is checked for depth (DATA_MAX_DEPTH), size
    (DATA_MAX_BYTES), NUL, lone surrogates and non-finite numbers; every problem is listed.
    """
    found: list[tuple[Path, str]] = []
    for loc, value in values:
        wrong = problems(value, max_depth=settings.data_max_depth, path=loc)
        if not wrong and isinstance(value, dict):
            too_large = size_problem(value, max_bytes=settings.data_max_bytes)
            wrong = [(loc, too_large)] if too_large else []
        found.extend(wrong)
    if found:
        raise RequestValidationError(
            [{"loc": loc, "msg": msg, "type": "value_error"} for loc, msg in found]
        )


def _shown_error(error: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "loc": [excerpt(part, 60) if isinstance(part, str) else part for part in error["loc"]],
        "msg": excerpt(str(error.get("msg", "")), 500),
        "type": str(error.get("type", "value_error")),
    }
    if "input" in error:
        shown["input"] = excerpt(error["input"])
    return shown


def shown_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors as an answer shows them: input cut to an excerpt, always renderable."""
    return [_shown_error(dict(e)) for e in errors]


async def validation_refused(_request: Request, exc: Exception) -> JSONResponse:
    """The 422 of a refused request (FastAPI's shape, without echoing the input)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": shown_errors(exc.errors())}, status_code=422)


def is_data_error(exc: BaseException) -> bool:
    """Whether the task log refused a value of the request, rather than being unreachable.

    A DataError is the database refusing a value (NUL in text, a number or date out of its
    range); a StatementError that is not a DBAPIError failed while binding a parameter,
    before anything was sent. Both are about the request: a retry cannot help.
    """
    if isinstance(exc, DataError):
        return True
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return isinstance(exc.orig, ValueError | TypeError | OverflowError)
    return False


UNSTORABLE = (
    "a value of this request cannot be stored in the task log (NUL characters, a lone "
    "surrogate, or a number or date out of range); nothing was accepted"
)


def unstorable_answer() -> JSONResponse:
    """The 422 of a request the database refused a value of."""
    error = {"loc": ["body"], "msg": UNSTORABLE, "type": "value_error"}
    return JSONResponse({"detail": [error]}, status_code=422)
