"""The OpenAPI document: FastAPI's, plus what only the running settings know.

Each file field of an upload declares the content types the route takes (its multipart
`encoding`), so that a client, or a fuzzer that read the document, sends an acceptable one
rather than guessing into a 415: UPLOAD_ALLOWED_TYPES for documents and attachments, the
import types for FAQ imports (declared by that route itself).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.core.config import Settings

MULTIPART = "multipart/form-data"


def _is_file(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "array":
        return _is_file(schema.get("items") or {})
    return schema.get("format") == "binary" or "contentMediaType" in schema


def _component(document: dict[str, Any], ref: str) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return found


def declare_upload_types(document: dict[str, Any], types: frozenset[str]) -> None:
    """Give every file field without a declared encoding the content types in `types`."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            media = (operation.get("requestBody") or {}).get("content", {}).get(MULTIPART)
            if media is None:
                continue
            schema = media.get("schema", {})
            if "$ref" in schema:
                schema = _component(document, schema["$ref"])
            encoding = media.setdefault("encoding", {})
            for name, field in schema.get("properties", {}).items():
                if _is_file(field) and name not in encoding:
                    encoding[name] = {"contentType": ", ".join(sorted(types))}


def install(app: FastAPI, settings: Settings) -> None:
    """Serve FastAPI's document with each upload's accepted content types declared."""

    built: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not built:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            declare_upload_types(document, settings.allowed_upload_types)
            app.openapi_schema = document
            built.append(document)
        return built[0]

    app.openapi = openapi  # type: ignore[method-assign]
