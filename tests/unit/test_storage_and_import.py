import io
from pathlib import Path

import pytest

from services.core.chatbot.faq_import import ImportFileError, format_of, parse
from services.core.config import Settings
from services.core.storage import FileTooLarge
from services.core.storage.base import safe_filename
from services.core.storage.local import LocalStorage
from services.core.storage.signing import signed_path, signing_secret, verify


def test_signed_links_expire_and_cannot_be_forged() -> None:
    secret = signing_secret("k" * 44)
    path = signed_path(secret, "2026/a/b.pdf", ttl_s=60, now=1000.0)
    expires = int(path.split("expires=")[1].split("&")[0])
    signature = path.split("signature=")[1]
    assert verify(secret, "2026/a/b.pdf", expires, signature, now=1030.0)
    assert not verify(secret, "2026/a/b.pdf", expires, signature, now=1061.0)
    assert not verify(secret, "2026/a/other.pdf", expires, signature, now=1030.0)
    assert not verify(signing_secret("x" * 44), "2026/a/b.pdf", expires, signature, now=1030.0)


def test_local_storage_saves_hashes_and_refuses_oversize(tmp_path: Path) -> None:
    storage = LocalStorage(Settings(storage_local_dir=str(tmp_path)))
    stored = storage.save(
        io.BytesIO(b"hello"), filename="../../etc/passwd", content_type="text/plain", max_bytes=10
    )
    assert stored.size == 5 and stored.sha256.startswith("2cf24dba")
    # The original name travels to ChatbotMobile; the key holds only a safe name.
    assert stored.filename == "../../etc/passwd" and stored.ref.endswith("/passwd")
    assert storage.path_of(stored.ref.removeprefix("local:")).is_relative_to(tmp_path)
    with storage.open(stored.ref) as data:
        assert data.read() == b"hello"
    assert storage.url_for(stored.ref, 60).startswith("http://127.0.0.1:8000/api/v1/files/")
    with pytest.raises(FileTooLarge):
        storage.save(io.BytesIO(b"x" * 11), filename="big", content_type="text/plain", max_bytes=10)
    storage.delete(stored.ref)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    with pytest.raises(ValueError, match="escapes"):
        storage.path_of("../outside")


def test_safe_filename_keeps_no_path() -> None:
    assert safe_filename("../../etc/pass wd") == "pass_wd"
    assert safe_filename("C:\\docs\\a.pdf") == "a.pdf"
    assert safe_filename("...") == "file"


def test_import_rows_are_validated_with_spreadsheet_row_numbers() -> None:
    data = b"Question,Answer,Tags\nq1,a1,x;y\n,a2,\nq3,,\n\nq5,a5,\n"
    parsed = parse(io.BytesIO(data), "csv", max_rows=100)
    assert parsed.rows == [
        {"question": "q1", "answer": "a1", "tags": ["x", "y"]},
        {"question": "q5", "answer": "a5"},
    ]
    assert parsed.errors == [
        {"row": 3, "reason": "question is empty"},
        {"row": 4, "reason": "answer is empty"},
    ]


def test_parsing_an_import_leaves_the_file_open() -> None:
    data = io.BytesIO(b"question,answer\nq,a\n")
    parse(data, "csv", max_rows=10)
    assert not data.closed
    data.seek(0)  # the API stores the upload after parsing it


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"question,category\nq,c\n", "answer"),
        (b"question,answer\n", "no rows"),
        (b"question,answer\n" + b"q,a\n" * 11, "more than 10 rows"),
    ],
)
def test_unusable_import_files_say_why(data: bytes, message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        parse(io.BytesIO(data), "csv", max_rows=10)


def test_import_format_comes_from_name_or_type() -> None:
    assert format_of("faqs.CSV", "application/octet-stream") == "csv"
    assert (
        format_of("x", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        == "xlsx"
    )
    with pytest.raises(ImportFileError):
        format_of("faqs.json", "application/json")


def test_a_non_ascii_signature_is_refused_not_an_error() -> None:
    assert not verify(signing_secret("k" * 44), "a", 2_000_000_000, "é" * 64, now=1.0)
