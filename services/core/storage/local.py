"""Local-directory storage (in Kubernetes: a volume shared by the API and the http-worker)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from services.core.config import Settings
from services.core.storage.base import StoredFile, copy_stream, new_key, spool_and_hash
from services.core.storage.signing import signed_path, signing_secrets

PREFIX = "local:"


class LocalStorage:
    """Files under STORAGE_LOCAL_DIR; ChatbotMobile downloads them through signed API URLs."""

    def __init__(self, settings: Settings) -> None:
        self.root = Path(settings.storage_local_dir).resolve()
        self._public = settings.public_api_url.rstrip("/")
        # The newest key signs new links; the route verifies with every listed key.
        self._secret = signing_secrets(settings.secrets_key.get_secret_value())[0]

    def path_of(self, key: str) -> Path:
        """The file of a key, refusing keys that escape the root."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError("storage key escapes the storage directory")
        return path

    def save(
        self, source: IO[bytes], *, filename: str, content_type: str, max_bytes: int
    ) -> StoredFile:
        spool, size, sha256 = spool_and_hash(source, max_bytes)
        key = new_key(filename)
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        with spool, partial.open("wb") as target:
            copy_stream(spool, target)
        os.replace(partial, path)  # readers never see a half-written file
        return StoredFile(PREFIX + key, filename, content_type, size, sha256)

    def open(self, ref: str) -> IO[bytes]:
        return self.path_of(_key(ref)).open("rb")

    def delete(self, ref: str) -> None:
        path = self.path_of(_key(ref))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # Drop the now-empty per-upload directory.
        with contextlib.suppress(OSError):
            path.parent.rmdir()

    def url_for(self, ref: str, ttl_s: int) -> str:
        return self._public + signed_path(self._secret, _key(ref), ttl_s)


def _key(ref: str) -> str:
    if not ref.startswith(PREFIX):
        raise ValueError(f"not a local storage reference: {ref!r}")
    return ref[len(PREFIX) :]
