"""Downloading the files ChatbotMobile is pointed at, and checking them against the request."""

from __future__ import annotations

import hashlib

import aiohttp

from tools.standins.chatbot.errors import file_fetch_failed, file_unavailable
from tools.standins.chatbot.fields import FileSpec
from tools.standins.chatbot.store import Attachment

DOWNLOAD_TIMEOUT_S = 10.0
# Far above any test file; only here so a wrong URL cannot fill the stand-in's memory.
MAX_FILE_BYTES = 256 * 1024 * 1024
_CHUNK = 64 * 1024


def new_session() -> aiohttp.ClientSession:
    """The download session: 10 s per file, no proxy from the environment (URLs are direct)."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S), trust_env=False
    )


async def _read(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    async with session.get(url, allow_redirects=True) as response:
        if response.status >= 500:
            raise file_fetch_failed(f"downloading {url} answered HTTP {response.status}")
        if response.status != 200:
            raise file_unavailable(f"downloading {url} answered HTTP {response.status}")
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise file_unavailable(f"{url} is larger than {MAX_FILE_BYTES} bytes")
            digest.update(chunk)
    return size, digest.hexdigest()


async def download(session: aiohttp.ClientSession, spec: FileSpec) -> Attachment:
    """Fetch `spec.file_url`; its real size and SHA-256.

    The host unreachable, timing out or failing (5xx) is 502 `file_fetch_failed` (transient:
    the file may be there on the next try); a 4xx from it or a file that does not match what
    was declared is 422 `file_unavailable` (final).
    """
    try:
        size, sha256 = await _read(session, spec.file_url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = f"{type(exc).__name__} {exc}".strip()
        raise file_fetch_failed(f"could not download {spec.file_url}: {reason}") from None
    if spec.size is not None and spec.size != size:
        raise file_unavailable(
            f"{spec.filename}: declared size {spec.size} but downloaded {size} bytes"
        )
    if spec.sha256 is not None and spec.sha256 != sha256:
        raise file_unavailable(
            f"{spec.filename}: declared sha256 {spec.sha256} but downloaded {sha256}"
        )
    return Attachment(
        file_url=spec.file_url,
        filename=spec.filename,
        content_type=spec.content_type,
        size=size,
        sha256=sha256,
    )
