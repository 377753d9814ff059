"""The storage interface and what a stored file looks like in a task payload."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from typing import IO, Any, Protocol

from services.core.config import Settings
from services.core.tasklog.models import utcnow

CHUNK = 1024 * 1024


class FileTooLarge(ValueError):
    """The upload is over the size limit."""


@dataclass(frozen=True)
class StoredFile:
    """A stored upload: its reference and what ChatbotMobile needs to check it."""

    ref: str
    filename: str
    content_type: str
    size: int
    sha256: str

    def to_payload(self) -> dict[str, Any]:
        """The JSON form carried by a task."""
        return asdict(self)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> StoredFile:
        """Back from the JSON form."""
        return cls(**{k: data[k] for k in ("ref", "filename", "content_type", "size", "sha256")})


class Storage(Protocol):
    """Where uploads live until their task is done."""

    def save(
        self, source: IO[bytes], *, filename: str, content_type: str, max_bytes: int
    ) -> StoredFile:
        """Store a stream; FileTooLarge (and nothing kept) if it passes `max_bytes`."""
        ...

    def open(self, ref: str) -> IO[bytes]:
        """The stored bytes, as a readable binary file."""
        ...

    def delete(self, ref: str) -> None:
        """Remove a stored file; no error if it is already gone."""
        ...

    def url_for(self, ref: str, ttl_s: int) -> str:
        """A URL from which the file can be downloaded for `ttl_s` seconds."""
        ...


def safe_filename(name: str) -> str:
    """A file name with no path and only harmless characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "file"
    return cleaned[:120]


def new_key(filename: str) -> str:
    """A fresh storage key for an upload."""
    day = utcnow().strftime("%Y/%m/%d")
    return f"{day}/{uuid.uuid4().hex}/{safe_filename(filename)}"


def spool_and_hash(source: IO[bytes], max_bytes: int) -> tuple[IO[bytes], int, str]:
    """Copy a stream to a temporary file, counting and hashing; FileTooLarge past the limit."""
    digest = hashlib.sha256()
    size = 0
    spool = tempfile.TemporaryFile()  # noqa: SIM115  (returned open to the caller)
    try:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FileTooLarge(f"file is larger than {max_bytes} bytes")
            digest.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size, digest.hexdigest()


def copy_stream(source: IO[bytes], target: IO[bytes]) -> None:
    """Copy one binary stream into another."""
    shutil.copyfileobj(source, target, CHUNK)


def make_storage(settings: Settings) -> Storage:
    """The storage backend the settings choose."""
    if settings.storage_backend == "s3":
        from services.core.storage.s3 import S3Storage

        return S3Storage(settings)
    from services.core.storage.local import LocalStorage

    return LocalStorage(settings)
