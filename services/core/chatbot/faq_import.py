"""FAQ import files (CSV or XLSX): parsed and validated row by row.

Columns, by header name (any order, case-insensitive): question, answer, and optionally
category and tags (separated by ',' or ';'). Row numbers are those a spreadsheet shows: the
header is row 1. Parsing is bounded: rows (blank ones included), characters per cell and, for
XLSX, the uncompressed size of the archive (a zip bomb is refused before it is opened).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from openpyxl import load_workbook

REQUIRED = ("question", "answer")
OPTIONAL = ("category", "tags")
MAX_QUESTION = 1_000
MAX_ANSWER = 10_000
FORMATS = {"csv", "xlsx"}
# The csv module refuses longer fields by itself (csv.field_size_limit, process-wide).
CSV_FIELD_LIMIT = 131_072


@dataclass
class ParsedImport:
    """Valid rows, or the reasons rows are not."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


class ImportFileError(ValueError):
    """The file as a whole is unusable (format, header, size)."""


def format_of(filename: str, content_type: str) -> str:
    """'csv' or 'xlsx' from the name or type of an upload, else ImportFileError."""
    name = filename.lower()
    if name.endswith(".csv") or content_type in {"text/csv", "application/csv"}:
        return "csv"
    if name.endswith(".xlsx") or "spreadsheetml" in content_type:
        return "xlsx"
    raise ImportFileError("an FAQ import must be a .csv or .xlsx file")


@dataclass(frozen=True)
class _Limits:
    max_rows: int
    max_cell_chars: int
    max_uncompressed_bytes: int | None


def _csv_rows(data: IO[bytes], limits: _Limits) -> Iterator[list[Any]]:
    text = io.TextIOWrapper(data, encoding="utf-8-sig", newline="")
    try:
        yield from csv.reader(text)
    except UnicodeDecodeError as exc:
        raise ImportFileError("CSV must be UTF-8") from exc
    except csv.Error as exc:
        # A NUL byte, or a field past the csv module's own limit.
        raise ImportFileError(f"not a readable CSV file: {exc}") from exc
    finally:
        # The wrapper would close `data` when it goes: the caller still needs it (the API
        # stores the upload after parsing it).
        text.detach()


def _check_archive(data: IO[bytes], limit: int | None) -> None:
    # The sizes a zip declares bound what reading it yields (zipfile stops at them and checks
    # the CRC), so adding them up refuses a bomb before any XML is parsed.
    try:
        with zipfile.ZipFile(data) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImportFileError(f"not a readable XLSX file: {type(exc).__name__}") from exc
    finally:
        data.seek(0)
    if limit is not None and total > limit:
        raise ImportFileError(
            f"the XLSX file unpacks to {total} bytes; the limit is {limit}: split the file"
        )


def _xlsx_rows(data: IO[bytes], limits: _Limits) -> Iterator[list[Any]]:
    _check_archive(data, limits.max_uncompressed_bytes)
    try:
        book = load_workbook(data, read_only=True, data_only=True)
        sheet = book.worksheets[0]
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise ImportFileError(f"not a readable XLSX file: {type(exc).__name__}") from exc
    try:
        header = next(sheet.iter_rows(max_row=1, values_only=True), None)
        if header is None:
            return
        # Later rows are cut to the header's width, and read one past the row limit at most:
        # a sheet that declares a far corner (XFD1048576) is not padded out to it.
        width = max((i + 1 for i, v in enumerate(header) if _text(v)), default=1)
        yield list(header)
        last = limits.max_rows + 2
        for values in sheet.iter_rows(min_row=2, max_row=last, max_col=width, values_only=True):
            yield list(values)
    except ImportFileError:
        raise
    except Exception as exc:
        raise ImportFileError(f"not a readable XLSX file: {type(exc).__name__}") from exc
    finally:
        book.close()


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _check_cells(values: list[Any], number: int, max_chars: int) -> None:
    for value in values:
        if value is not None and len(str(value)) > max_chars:
            raise ImportFileError(
                f"row {number} has a cell longer than {max_chars} characters; "
                "FAQ_IMPORT_MAX_CELL_CHARS is the limit"
            )


def _check(record: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    question, answer = record.get("question", ""), record.get("answer", "")
    if not question:
        return None, "question is empty"
    if not answer:
        return None, "answer is empty"
    if len(question) > MAX_QUESTION:
        return None, f"question is longer than {MAX_QUESTION} characters"
    if len(answer) > MAX_ANSWER:
        return None, f"answer is longer than {MAX_ANSWER} characters"
    row: dict[str, Any] = {"question": question, "answer": answer}
    if record.get("category"):
        row["category"] = record["category"]
    tags = [t.strip() for t in re.split(r"[,;]", record.get("tags", "")) if t.strip()]
    if tags:
        row["tags"] = tags
    return row, None


def parse(
    data: IO[bytes],
    fmt: str,
    *,
    max_rows: int,
    max_cell_chars: int = CSV_FIELD_LIMIT,
    max_uncompressed_bytes: int | None = None,
) -> ParsedImport:
    """Parse and validate every row of an import file, within the given bounds."""
    limits = _Limits(max_rows, min(max_cell_chars, CSV_FIELD_LIMIT), max_uncompressed_bytes)
    rows = _csv_rows(data, limits) if fmt == "csv" else _xlsx_rows(data, limits)
    header = next(rows, None)
    if header is None:
        raise ImportFileError("the file is empty")
    names = [_text(h).lower() for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ImportFileError(f"the header row lacks column(s): {', '.join(missing)}")
    wanted = {c: names.index(c) for c in (*REQUIRED, *OPTIONAL) if c in names}
    parsed = ParsedImport()
    for number, values in enumerate(rows, start=2):
        if number - 1 > limits.max_rows:  # blank rows count: they cost reading too
            raise ImportFileError(f"more than {limits.max_rows} rows; split the file")
        _check_cells(values, number, limits.max_cell_chars)
        if not any(_text(v) for v in values):
            continue  # blank lines are not rows
        record = {c: _text(values[i]) if i < len(values) else "" for c, i in wanted.items()}
        row, reason = _check(record)
        if row is None:
            parsed.errors.append({"row": number, "reason": reason})
        else:
            parsed.rows.append(row)
    if not parsed.rows and not parsed.errors:
        raise ImportFileError("the file has a header but no rows")
    return parsed
