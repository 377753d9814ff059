"""FAQ import files (CSV or XLSX): parsed and validated row by row.

Columns, by header name (any order, case-insensitive): question, answer, and optionally
category and tags (separated by ',' or ';'). Row numbers are those a spreadsheet shows: the
header is row 1.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from openpyxl import load_workbook

REQUIRED = ("question", "answer")
OPTIONAL = ("category", "tags")
MAX_QUESTION = 1_000
MAX_ANSWER = 10_000
FORMATS = {"csv", "xlsx"}


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


def _csv_rows(data: IO[bytes]) -> Iterator[list[Any]]:
    text = io.TextIOWrapper(data, encoding="utf-8-sig", newline="")
    try:
        yield from csv.reader(text)
    except UnicodeDecodeError as exc:
        raise ImportFileError("CSV must be UTF-8") from exc
    finally:
        # The wrapper would close `data` when it goes: the caller still needs it (the API
        # stores the upload after parsing it).
        text.detach()


def _xlsx_rows(data: IO[bytes]) -> Iterator[list[Any]]:
    try:
        book = load_workbook(data, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken file
        raise ImportFileError(f"not a readable XLSX file: {type(exc).__name__}") from exc
    try:
        sheet = book.worksheets[0]
        for values in sheet.iter_rows(values_only=True):
            yield list(values)
    finally:
        book.close()


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


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


def parse(data: IO[bytes], fmt: str, *, max_rows: int) -> ParsedImport:
    """Parse and validate every row of an import file."""
    rows = _csv_rows(data) if fmt == "csv" else _xlsx_rows(data)
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
        if not any(_text(v) for v in values):
            continue  # blank lines are not rows
        if len(parsed.rows) + len(parsed.errors) >= max_rows:
            raise ImportFileError(f"more than {max_rows} rows; split the file")
        record = {c: _text(values[i]) if i < len(values) else "" for c, i in wanted.items()}
        row, reason = _check(record)
        if row is None:
            parsed.errors.append({"row": number, "reason": reason})
        else:
            parsed.rows.append(row)
    if not parsed.rows and not parsed.errors:
        raise ImportFileError("the file has a header but no rows")
    return parsed
