"""Request validation against the contract's schemas: required fields, JSON types, limits."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from tools.standins.chatbot.errors import ApiError, invalid

MAX_PAGE_SIZE = 500
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
ATTACHMENT_FIELDS = frozenset({"file_url", "filename", "content_type", "size", "sha256"})


@dataclass(frozen=True)
class FileSpec:
    """A file ChatbotMobile is asked to download, with what the caller declared about it."""

    file_url: str
    filename: str
    content_type: str | None
    size: int | None
    sha256: str | None


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body, which must be a JSON object."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
        raise invalid(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    return body


def only(body: Mapping[str, Any], allowed: Collection[str], where: str = "the body") -> None:
    """Refuse fields the contract does not name, so a misspelt field is not silently dropped."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise invalid(f"unknown fields in {where}: {unknown}; allowed: {sorted(allowed)}")


def string(
    body: Mapping[str, Any], name: str, *, required: bool = False, min_length: int = 0
) -> str | None:
    """A string field; None when absent and not required (JSON null is not a string)."""
    if name not in body:
        if required:
            raise invalid(f"{name} is required")
        return None
    value = body[name]
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string, got {type(value).__name__}")
    if len(value) < min_length:
        raise invalid(f"{name} must not be empty")
    return value


def required_string(body: Mapping[str, Any], name: str, *, min_length: int = 1) -> str:
    """A string field that must be present (non-empty unless `min_length` is 0)."""
    value = string(body, name, required=True, min_length=min_length)
    assert value is not None  # required=True never answers None
    return value


def uri(body: Mapping[str, Any], name: str) -> str:
    """A required absolute http(s) URL."""
    value = required_string(body, name)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(f"{name} must be an absolute http(s) URL, got {value!r}")
    return value


def integer(body: Mapping[str, Any], name: str, *, minimum: int = 0) -> int | None:
    """An optional integer field of at least `minimum`."""
    if name not in body:
        return None
    value = body[name]
    # bool is an int in Python; a JSON true is not a size.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise invalid(f"{name} must be >= {minimum}, got {value}")
    return value


def sha256(body: Mapping[str, Any], name: str = "sha256") -> str | None:
    """An optional SHA-256 as 64 hex digits, lower-cased."""
    value = string(body, name)
    if value is None:
        return None
    if not _SHA256.fullmatch(value):
        raise invalid(f"{name} must be 64 hexadecimal digits")
    return value.lower()


def string_list(body: Mapping[str, Any], name: str) -> list[str] | None:
    """An optional array of strings."""
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid(f"{name} must be an array of strings")
    return list(value)


def objects(body: Mapping[str, Any], name: str, *, max_items: int | None = None) -> list[Any]:
    """A required array of JSON objects."""
    if name not in body:
        raise invalid(f"{name} is required")
    value = body[name]
    if not isinstance(value, list):
        raise invalid(f"{name} must be an array")
    if max_items is not None and len(value) > max_items:
        raise invalid(f"{name} takes at most {max_items} items, got {len(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid(f"{name}[{index}] must be an object")
    return value


@contextmanager
def within(where: str) -> Iterator[None]:
    """Prefix validation errors raised inside with `where`, so the caller knows what to fix."""
    try:
        yield
    except ApiError as exc:
        raise invalid(f"{where}: {exc.message}") from None


def file_spec(body: Mapping[str, Any]) -> FileSpec:
    """The file fields shared by file documents and FAQ attachments."""
    return FileSpec(
        file_url=uri(body, "file_url"),
        filename=required_string(body, "filename"),
        content_type=string(body, "content_type"),
        size=integer(body, "size"),
        sha256=sha256(body),
    )


def attachments(body: Mapping[str, Any]) -> list[FileSpec] | None:
    """The optional FAQ `attachments`."""
    if "attachments" not in body:
        return None
    specs = []
    for index, item in enumerate(objects(body, "attachments")):
        where = f"attachments[{index}]"
        only(item, ATTACHMENT_FIELDS, where)
        with within(where):
            specs.append(file_spec(item))
    return specs


def query_string(request: web.Request, name: str) -> str:
    """A required, non-empty query parameter."""
    value = request.query.get(name)
    if not value:
        raise invalid(f"query parameter {name} is required")
    return value


def page(request: web.Request) -> tuple[int, int]:
    """`page` (from 1) and `page_size` (1 to 500, default 50) from the query."""
    numbers = []
    for name, default, maximum in (("page", 1, None), ("page_size", 50, MAX_PAGE_SIZE)):
        raw = request.query.get(name)
        try:
            value = default if raw is None else int(raw)
        except ValueError:
            raise invalid(f"{name} must be an integer, got {raw!r}") from None
        if value < 1 or (maximum is not None and value > maximum):
            limit = f"from 1 to {maximum}" if maximum else ">= 1"
            raise invalid(f"{name} must be {limit}, got {value}")
        numbers.append(value)
    return numbers[0], numbers[1]
