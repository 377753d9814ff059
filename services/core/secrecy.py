"""Secrets of a task: sealed at rest, never in a broker message, redacted in what we show.

A task's secrets (for example the per-call embeddings `api_key`) are encrypted with the
settings' key and stored in the task-log row; the broker message carries none of them, and the
worker unseals them when it runs the task. Everything we log or store as text goes through
`Redactor`, which masks secret-looking fields and the task's own secret values.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

MASK = "***"
_SECRET_KEY_RE = re.compile(
    r"(api[_-]?key|token|secret|password|passwd|authorization|credential)", re.IGNORECASE
)
# key=value / key: value pairs and bearer tokens inside free text (error messages, URLs).
_SECRET_TEXT_RE = re.compile(
    r"(?i)\b(api[_-]?key|access[_-]?token|token|secret|password|authorization|signature"
    r"|x-amz-signature|x-amz-credential)"
    r"(\"?\s*[=:]\s*\"?)([^\s\"&,;]+)"
)
_BEARER_RE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# scheme://user:password@host: the password of a URL.
_URL_PASSWORD_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/?#@:]*):([^\s/?#@]*)@")
# The task secret that holds a URL's `user:password`, sealed apart from its payload.
URL_CREDENTIALS = "url_credentials"


def is_secret_key(key: str) -> bool:
    """Whether a field name looks like it holds a secret."""
    return bool(_SECRET_KEY_RE.search(key))


def _holds_secret(value: Any) -> bool:
    # Flags and counts under a secret-looking name ("secret_seen": true) are not secrets.
    return isinstance(value, str | Mapping | list) and bool(value)


def find_secret_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Locations (keys and list indexes) of non-empty secret-looking fields in a JSON value."""
    found: list[tuple[str | int, ...]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = (*path, str(key))
            if is_secret_key(str(key)) and _holds_secret(item):
                found.append(where)
            else:
                found.extend(find_secret_paths(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(find_secret_paths(item, (*path, index)))
    return found


def find_secret_fields(value: Any, path: str = "") -> list[str]:
    """Paths (`a.b[0].c`) of non-empty secret-looking fields inside a JSON-like value."""
    start: tuple[str | int, ...] = (path,) if path else ()
    return [_dotted(p) for p in find_secret_paths(value, start)]


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class Redactor:
    """Masks secrets in values and text; knows the literal secrets of one task."""

    def __init__(self, known_values: Iterable[str] = ()) -> None:
        # Very short values would mask random substrings; real keys are long.
        self._known = sorted({v for v in known_values if len(v) >= 6}, key=len, reverse=True)

    def text(self, text: str) -> str:
        """Text with secret values and secret-looking pairs masked."""
        for value in self._known:
            text = text.replace(value, MASK)
        text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
        text = _URL_PASSWORD_RE.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
        return _SECRET_TEXT_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)

    def value(self, value: Any) -> Any:
        """A JSON-like value with secret-looking fields and known secrets masked."""
        if isinstance(value, Mapping):
            return {
                k: (MASK if is_secret_key(str(k)) and _holds_secret(v) else self.value(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


def split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its `user:password@`, and that `user:password` (None without one)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host)), parts.netloc.rsplit("@", 1)[0]


def with_credentials(url: str, credentials: str | None) -> str:
    """The URL with `credentials` (from `split_credentials`) put back."""
    if not credentials:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{credentials}@{parts.netloc}"))


class SealError(ValueError):
    """Sealed secrets that this key cannot open (wrong or rotated key, tampering)."""


def split_keys(keys: str) -> list[str]:
    """The keys of a comma-separated SECRETS_KEY, newest first."""
    return [k.strip() for k in keys.split(",") if k.strip()]


def key_bytes(key: str) -> bytes | None:
    """The bytes a lenient base64 decoder reads from a Fernet key's text (None: no key).

    Characters outside the url-safe alphabet are skipped and padding is added, as decoders
    that are not strict do: two texts with the same bytes are the same key.
    """
    alphabet = re.sub(r"[^A-Za-z0-9_-]", "", key)
    try:
        return base64.urlsafe_b64decode(alphabet + "=" * (-len(alphabet) % 4))
    except (binascii.Error, ValueError):
        return None


class Sealer:
    """Encrypts a task's secrets for storage in its task-log row.

    `keys` is SECRETS_KEY: comma-separated Fernet keys, newest first. The first seals; every
    one opens, so tasks sealed before a rotation still run after it (MultiFernet).
    """

    def __init__(self, keys: str) -> None:
        self._fernet = MultiFernet([Fernet(k.encode()) for k in split_keys(keys)])

    def seal(self, secrets: Mapping[str, str]) -> str | None:
        """Ciphertext of the secrets, or None when there are none."""
        if not secrets:
            return None
        return self._fernet.encrypt(json.dumps(dict(secrets)).encode()).decode()

    def unseal(self, sealed: str | None) -> dict[str, str]:
        """The secrets back from their ciphertext."""
        if not sealed:
            return {}
        try:
            opened = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken as exc:
            raise SealError("sealed task secrets cannot be opened with any SECRETS_KEY") from exc
        if not isinstance(opened, dict):
            raise SealError("sealed task secrets are not a mapping")
        return {str(k): str(v) for k, v in opened.items()}
