"""Signed, expiring download URLs for files kept in local storage."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from urllib.parse import quote

from services.core.secrecy import split_keys


def _mac(secret: bytes, key: str, expires: int) -> str:
    return hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def signing_secret(secrets_key: str) -> bytes:
    """A key for URL signatures, derived from one sealing key (never the key itself)."""
    return hmac.new(secrets_key.encode(), b"file-download-urls", hashlib.sha256).digest()


def signing_secrets(secrets_keys: str) -> list[bytes]:
    """URL signing keys of a comma-separated SECRETS_KEY: the first signs, any verifies."""
    return [signing_secret(k) for k in split_keys(secrets_keys)]


def signed_path(secret: bytes, key: str, ttl_s: int, now: float | None = None) -> str:
    """`/api/v1/files/<key>?expires=..&signature=..` valid for `ttl_s` seconds."""
    expires = int((now or time.time()) + ttl_s)
    return f"/api/v1/files/{quote(key)}?expires={expires}&signature={_mac(secret, key, expires)}"


def verify(
    secret: bytes | Iterable[bytes],
    key: str,
    expires: int,
    signature: str,
    now: float | None = None,
) -> bool:
    """Whether a signature, by any of the secrets, is right for the key and has not expired."""
    if expires < (now or time.time()):
        return False
    secrets = [secret] if isinstance(secret, bytes) else list(secret)
    # Bytes, not str: compare_digest refuses non-ASCII strings, and anyone can send those.
    given = signature.encode()
    return any(hmac.compare_digest(_mac(s, key, expires).encode(), given) for s in secrets)
