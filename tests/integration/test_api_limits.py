"""Every request limit of the API, each tested one byte over it: 413 or 422, nothing stored.

Bodies are counted while they stream in, so a body over its limit is refused before the rest
is read (and before a multipart file fills the disk it is spooled to). FAQ import files are
parsed in a child process within their own limits.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import Workbook
from sqlalchemy import text

from services.core.config import Settings, get_settings
from services.core.db import get_engine
from tests.support.procs import wait_until
from tests.support.server import parked, running_api

pytestmark = pytest.mark.slow
BODY_LIMIT = 1000
UPLOAD_LIMIT = 4000
BOUNDARY = "limit-test-boundary"


def _limited(tmp_path: Path, **update: Any) -> Settings:
    base = parked(get_settings(), "limits").model_copy(
        update={
            "api_max_body_bytes": BODY_LIMIT,
            "upload_max_request_bytes": UPLOAD_LIMIT,
            "upload_max_bytes": UPLOAD_LIMIT,
            "storage_local_dir": str(tmp_path / "uploads"),
        }
    )
    return base.model_copy(update=update)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with running_api(_limited(tmp_path_factory.mktemp("limits"))) as client:
        yield client


def _rows() -> int:
    with get_engine(get_settings().database_url).connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM task_log")).scalar_one())


def _json_of_size(size: int) -> bytes:
    """An upload-text body of exactly `size` bytes."""
    empty = json.dumps({"customer_id": "c1", "text": ""}).encode()
    body = json.dumps({"customer_id": "c1", "text": "x" * (size - len(empty))}).encode()
    assert len(body) == size
    return body


def _multipart_of_size(size: int) -> bytes:
    """An upload-file body (customer c1, one PDF) of exactly `size` bytes."""

    def build(content: bytes) -> bytes:
        return (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="customer_id"\r\n\r\nc1\r\n'
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
                "Content-Type: application/pdf\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )

    body = build(b"%" * (size - len(build(b""))))
    assert len(body) == size
    return body


MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
JSON = {"content-type": "application/json"}


def test_a_json_body_one_byte_over_api_max_body_bytes_is_413(api: httpx.Client) -> None:
    ok = api.post("/api/v1/documents/upload-text", content=_json_of_size(BODY_LIMIT), headers=JSON)
    assert ok.status_code == 202, ok.text
    before = _rows()
    over = api.post(
        "/api/v1/documents/upload-text", content=_json_of_size(BODY_LIMIT + 1), headers=JSON
    )
    assert over.status_code == 413
    assert over.json()["detail"] == (
        f"the request body is larger than {BODY_LIMIT} bytes (API_MAX_BODY_BYTES)"
    )
    # Without a Content-Length (chunked), it is counted as it arrives.
    chunked = api.post(
        "/api/v1/documents/upload-text",
        content=iter([_json_of_size(BODY_LIMIT + 1)]),
        headers=JSON,
    )
    assert chunked.status_code == 413
    assert _rows() == before


def test_a_json_route_has_the_json_limit_whatever_the_content_type_says(
    api: httpx.Client,
) -> None:
    # The upload limit belongs to the upload routes: a JSON route labelled multipart once
    # read up to UPLOAD_MAX_REQUEST_BYTES, then echoed all of it in its 422.
    before = _rows()
    over = api.post(
        "/api/v1/documents/upload-text",
        content=_json_of_size(BODY_LIMIT + 1),
        headers=MULTIPART,
    )
    assert over.status_code == 413
    assert "API_MAX_BODY_BYTES" in over.json()["detail"]
    within = api.post(
        "/api/v1/documents/upload-text", content=_json_of_size(BODY_LIMIT), headers=MULTIPART
    )
    assert within.status_code == 422
    assert len(within.content) < 600  # an excerpt of the body at most, not the body
    assert _rows() == before


def test_a_multipart_body_one_byte_over_upload_max_request_bytes_is_413(
    api: httpx.Client,
) -> None:
    ok = api.post(
        "/api/v1/documents/upload-file", content=_multipart_of_size(UPLOAD_LIMIT), headers=MULTIPART
    )
    assert ok.status_code == 202, ok.text
    before = _rows()
    over = api.post(
        "/api/v1/documents/upload-file",
        content=_multipart_of_size(UPLOAD_LIMIT + 1),
        headers=MULTIPART,
    )
    assert over.status_code == 413
    assert "UPLOAD_MAX_REQUEST_BYTES" in over.json()["detail"]
    assert _rows() == before


def _stream_until_answered(port: int, path: str, offered: int) -> tuple[int, bytes]:
    """Send a chunked multipart body of up to `offered` bytes; (bytes sent, the answer)."""
    chunk = b"%" * 65536
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    ).encode()
    start = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head + f"{len(start):x}\r\n".encode() + start + b"\r\n")
        conn.setblocking(False)
        answer = b""
        deadline = time.monotonic() + 60
        while sent < offered and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                answer += conn.recv(65536)
            if answer:
                break
            try:
                sent += conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                break
        conn.setblocking(True)
        while b"\r\n\r\n" not in answer:
            more = conn.recv(65536)
            if not more:
                break
            answer += more
    return sent, answer


def test_an_endless_upload_is_refused_at_the_limit_not_read_to_the_end(
    api: httpx.Client,
) -> None:
    offered = 256 * 1024 * 1024
    port = int(str(api.base_url).rsplit(":", 1)[1])
    sent, answer = _stream_until_answered(port, "/api/v1/documents/upload-file", offered)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # What the server read is the limit; what we got to send besides sat in socket buffers.
    assert sent < 32 * 1024 * 1024


def _csv(rows: int, answer: str = "a") -> bytes:
    return b"question,answer\n" + b"".join(f"q{n},{answer}\n".encode() for n in range(rows))


def _importing(tmp_path: Path, **update: Any) -> Settings:
    """Limits for import tests: room for the files, the import limit under test in `update`."""
    room = {"upload_max_request_bytes": 2**24, "upload_max_bytes": 2**24}
    return _limited(tmp_path, **room, **update)


def _file_refusal(answer: httpx.Response) -> str:
    """The message of a 422 that refuses the import file (one error, at body.file)."""
    assert answer.status_code == 422, answer.text[:300]
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "file"]
    return str(error["msg"])


def _import(api: httpx.Client, data: bytes, name: str = "faqs.csv") -> httpx.Response:
    return api.post(
        "/api/v1/mobile-faq/import",
        data={"customer_id": "c1"},
        files={"file": (name, data, "application/octet-stream")},
    )


def test_an_import_one_row_over_faq_import_max_rows_is_422(tmp_path: Path) -> None:
    with running_api(_importing(tmp_path, faq_import_max_rows=5)) as api:
        assert _import(api, _csv(5)).status_code == 202
        over = _import(api, _csv(6))
    assert _file_refusal(over) == "more than 5 rows; split the file"


def test_an_import_cell_one_character_over_faq_import_max_cell_chars_is_422(
    tmp_path: Path,
) -> None:
    with running_api(_importing(tmp_path, faq_import_max_cell_chars=50)) as api:
        assert _import(api, _csv(1, "a" * 50)).status_code == 202
        over = _import(api, _csv(1, "a" * 51))
    assert "longer than 50 characters" in _file_refusal(over)


def _xlsx(rows: int) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["question", "answer"])
    for n in range(rows):
        sheet.append([f"q{n}", "a"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_xlsx_one_byte_over_faq_import_max_uncompressed_bytes_is_422(
    tmp_path: Path,
) -> None:
    data = _xlsx(3)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(i.file_size for i in archive.infolist())
    with running_api(_importing(tmp_path, faq_import_max_uncompressed_bytes=unpacked)) as api:
        assert _import(api, data, "faqs.xlsx").status_code == 202
    with running_api(_importing(tmp_path, faq_import_max_uncompressed_bytes=unpacked - 1)) as api:
        over = _import(api, data, "faqs.xlsx")
    assert f"the limit is {unpacked - 1}" in _file_refusal(over)


def test_an_import_that_takes_longer_than_faq_import_timeout_s_is_422(tmp_path: Path) -> None:
    with running_api(_importing(tmp_path, faq_import_timeout_s=0.001)) as api:
        over = _import(api, _csv(20_000))
    assert "FAQ_IMPORT_TIMEOUT_S" in _file_refusal(over)


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _import_checkers() -> list[int]:
    """The import checks running now: children of this process' multiprocessing fork server."""
    checkers = []
    for pid in _children(os.getpid()):
        with contextlib.suppress(OSError):
            if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                checkers += _children(pid)
    return checkers


def test_an_import_whose_checker_dies_is_503_not_a_verdict_on_the_file(tmp_path: Path) -> None:
    room = {"upload_max_request_bytes": 2**26, "upload_max_bytes": 2**26}
    settings = _limited(tmp_path, faq_import_max_rows=2_000_000, **room)
    with running_api(settings) as api, ThreadPoolExecutor(1) as pool:
        sent = pool.submit(_import, api, _csv(600_000))  # a few seconds of parsing
        checkers = wait_until(_import_checkers, 60, interval_s=0.01, what="the import check")
        for pid in checkers:
            os.kill(pid, signal.SIGKILL)  # as the node's OOM killer would
        answer = sent.result(60)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert "try again" in answer.json()["detail"]
