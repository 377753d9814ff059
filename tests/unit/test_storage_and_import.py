import io
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.fernet import Fernet
from openpyxl import Workbook

from services.core.chatbot.faq_import import ImportFileError, format_of, parse
from services.core.config import Settings
from services.core.storage import FileTooLarge
from services.core.storage.base import safe_filename
from services.core.storage.local import LocalStorage
from services.core.storage.signing import signed_path, signing_secret, signing_secrets, verify


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


def test_links_signed_before_a_key_rotation_verify_with_the_listed_keys() -> None:
    old, new = "o" * 44, "n" * 44
    [signer] = signing_secrets(old)
    path = signed_path(signer, "2026/a/b.pdf", ttl_s=60, now=1000.0)
    expires = int(path.split("expires=")[1].split("&")[0])
    signature = path.split("signature=")[1]
    assert verify(signing_secrets(f"{new},{old}"), "2026/a/b.pdf", expires, signature, now=1.0)
    assert not verify(signing_secrets(new), "2026/a/b.pdf", expires, signature, now=1.0)


def test_new_links_are_signed_with_the_newest_key(tmp_path: Path) -> None:
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    storage = LocalStorage(Settings(secrets_key=f"{new},{old}", storage_local_dir=str(tmp_path)))
    query = parse_qs(urlsplit(storage.url_for("local:2026/x/y.pdf", 60)).query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    assert verify(signing_secrets(new), "2026/x/y.pdf", expires, signature)
    assert not verify(signing_secrets(old), "2026/x/y.pdf", expires, signature)


def _xlsx(rows: list[list[object]], far_cell: str | None = None) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    if far_cell:
        sheet[far_cell] = "x"  # the sheet's dimension now reaches that corner
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _unpacked_size(data: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return sum(i.file_size for i in archive.infolist())


def test_a_cell_one_character_over_the_limit_refuses_the_file() -> None:
    fine = b"question,answer\nq,abcde\n"  # the header's names are not cells
    assert parse(io.BytesIO(fine), "csv", max_rows=10, max_cell_chars=5).rows
    with pytest.raises(ImportFileError, match="row 2 has a cell longer than 5 characters"):
        parse(io.BytesIO(b"question,answer\nq,abcdef\n"), "csv", max_rows=10, max_cell_chars=5)
    sheet = _xlsx([["question", "answer"], ["q", "abcdef"]])
    with pytest.raises(ImportFileError, match="FAQ_IMPORT_MAX_CELL_CHARS"):
        parse(io.BytesIO(sheet), "xlsx", max_rows=10, max_cell_chars=5)


def test_an_xlsx_one_byte_over_its_unpacked_limit_is_refused_before_it_is_parsed() -> None:
    data = _xlsx([["question", "answer"], ["q", "a"]])
    size = _unpacked_size(data)
    parsed = parse(io.BytesIO(data), "xlsx", max_rows=10, max_uncompressed_bytes=size)
    assert parsed.rows == [{"question": "q", "answer": "a"}]
    with pytest.raises(ImportFileError, match=f"unpacks to {size} bytes; the limit is {size - 1}"):
        parse(io.BytesIO(data), "xlsx", max_rows=10, max_uncompressed_bytes=size - 1)


def test_a_sheet_that_declares_a_far_corner_is_read_only_to_the_row_limit() -> None:
    # A few bytes of XML that claim 1,048,576 rows of 16,384 columns.
    data = _xlsx([["question", "answer"], ["q", "a"]], far_cell="XFD1048576")
    with pytest.raises(ImportFileError, match="more than 1000 rows"):
        parse(io.BytesIO(data), "xlsx", max_rows=1000)


def test_blank_rows_count_towards_the_row_limit() -> None:
    with pytest.raises(ImportFileError, match="more than 2 rows"):
        parse(io.BytesIO(b"question,answer\nq,a\n\n\n"), "csv", max_rows=2)


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"question,answer\nq," + b"a" * 131_073 + b"\n", "csv", "not a readable CSV file"),
        (b"PK\x03\x04 not really a zip", "xlsx", "not a readable XLSX file"),
        (b"question,answer\n", "xlsx", "not a readable XLSX file"),
    ],
)
def test_broken_import_files_are_refused_not_errors(data: bytes, fmt: str, message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        parse(io.BytesIO(data), fmt, max_rows=10)
