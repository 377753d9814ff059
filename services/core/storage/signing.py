"""Signed, expiring download URLs for files kept in local storage."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote


def _mac(secret: bytes, key: str, expires: int) -> str:
    return hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signing_secret(secrets_key: str) -> bytes:
    """A key for URL signatures, derived from SECRETS_KEY (never the key itself)."""
    return hmac.new(secrets_key.encode(), b"file-download-urls", hashlib.sha256).digest()


def signed_path(secret: bytes, key: str, ttl_s: int, now: float | None = None) -> str:
    """`/api/v1/files/<key>?expires=..&signature=..` valid for `ttl_s` seconds."""
    expires = int((now or time.time()) + ttl_s)
    return f"/api/v1/files/{quote(key)}?expires={expires}&signature={_mac(secret, key, expires)}"


def verify(secret: bytes, key: str, expires: int, signature: str, now: float | None = None) -> bool:
    """Whether a signature is right for the key and has not expired."""
    if expires < (now or time.time()):
        return False
    # Bytes, not str: compare_digest refuses non-ASCII strings, and anyone can send those.
    return hmac.compare_digest(_mac(secret, key, expires).encode(), signature.encode())
