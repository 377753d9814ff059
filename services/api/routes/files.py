"""GET /api/v1/files/{key}: signed, expiring downloads of locally stored uploads.

ChatbotMobile fetches uploaded files from here when STORAGE_BACKEND=local; with S3 it gets
pre-signed S3 URLs instead and this route answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse
from starlette.convertors import Convertor, register_url_convertor

from services.api.deps import RuntimeDep
from services.api.routing import ThreadedRoute
from services.api.schemas import errors
from services.core.storage.local import LocalStorage
from services.core.storage.signing import signing_secrets, verify

router = APIRouter(
    prefix="/api/v1/files",
    tags=["files"],
    route_class=ThreadedRoute,
    responses=errors(403, 404),
)


class _AnyKey(Convertor[str]):
    """A file key of any characters: Starlette's `path` (`.*`) stops at a line break, so such
    a key fell through to another route's path (405) instead of being looked up (404)."""

    regex = "[\\s\\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anykey", _AnyKey())


@router.get(
    "/{key:anykey}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "description": "the file",
        }
    },
)
def download(
    key: str,
    runtime: RuntimeDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
) -> FileResponse:
    """A stored file, for a valid unexpired signature."""
    storage = runtime.storage
    if not isinstance(storage, LocalStorage):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no local storage here")
    # Any listed key: links signed before a key rotation stay valid until they expire.
    secrets = signing_secrets(runtime.settings.secrets_key.get_secret_value())
    if not verify(secrets, key, expires, signature):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bad or expired signature")
    try:
        path = storage.path_of(key)
    except ValueError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file") from exc
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return FileResponse(path, media_type="application/octet-stream")
