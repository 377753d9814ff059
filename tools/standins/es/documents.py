"""Parsing documents against mappings, as ES 8 does it on every write.

Values are checked against the declared field type (with ES's coercion of numeric and boolean
strings), unknown fields are refused under `"dynamic": "strict"`, ignored under `false`, and
mapped from their JSON type otherwise, so a later document that disagrees with the inferred
type fails just as it would on a real cluster.
"""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from tools.standins.es.errors import EsError
from tools.standins.es.mapping import (
    DEFAULT_DATE_FORMAT,
    INTEGER_RANGES,
    NUMERIC,
    OBJECTS,
    TEXTUAL,
    UNCHECKED,
    field_type,
    to_decimal,
)
from tools.standins.es.values import date_millis, in_precision, token_name

METADATA_FIELDS = frozenset(
    {"_id", "_index", "_routing", "_source", "_version", "_seq_no", "_primary_term"}
    | {"_ignored", "_field_names", "_doc_count", "_tier", "_data_stream_timestamp"}
)
_ISO_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_PARTIAL_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")
_FALSY = (False, "false", "")


def apply_document(
    mappings: dict[str, Any], source: dict[str, Any], doc_id: str, *, nested_limit: int = 10_000
) -> dict[str, Any]:
    """Check `source` against `mappings`; the mappings with any dynamically added fields."""
    for key in source:
        if key in METADATA_FIELDS:
            raise EsError(
                400,
                "document_parsing_exception",
                f"Field [{key}] is a metadata field and cannot be added inside a document. "
                "Use the index API request parameters.",
            )
    updated = copy.deepcopy(mappings)
    parser = _Parser(doc_id, updated)
    parser.parse_object(updated, source, "", updated.get("dynamic", True))
    if parser.nested > nested_limit:
        raise EsError(
            400,
            "document_parsing_exception",
            f"The number of nested documents has exceeded the allowed limit of [{nested_limit}]."
            " This limit can be set by changing the [index.mapping.nested_objects.limit] index "
            "level setting.",
        )
    return updated


def _name_error(reason: str) -> EsError:
    return EsError(
        400,
        "document_parsing_exception",
        f"failed to parse: {reason}",
        caused_by=_cause("illegal_argument_exception", reason),
    )


def split_field_name(name: str) -> list[str]:
    """A document's field name as the object path ES reads (`a.b` is `b` inside `a`)."""
    if name == "":
        raise _name_error("field name cannot be an empty string")
    if not name.strip():
        raise _name_error(f"field name cannot contain only whitespace: ['{name}']")
    parts = name.split(".")
    if len(parts) > 1 and not any(parts):
        raise _name_error("field name cannot contain only the character [.]")
    if any(not part.strip() for part in parts):
        raise _name_error(
            f"field name starting or ending with a [.] makes object resolution ambiguous: [{name}]"
        )
    return parts


def parses_as_date(text: str) -> bool:
    """Whether ES's `strict_date_optional_time` would read `text`."""
    if _PARTIAL_DATE.match(text):
        return True
    if not _ISO_DATE.match(text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _flatten(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    flat: list[Any] = []
    for item in value:
        flat.extend(_flatten(item))
    return flat


def _preview(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _cause(type_: str, reason: str) -> dict[str, str]:
    return {"type": type_, "reason": reason}


class _Parser:
    def __init__(self, doc_id: str, mappings: dict[str, Any]) -> None:
        self.doc_id = doc_id
        self.date_detection = mappings.get("date_detection", True) not in (False, "false")
        self.numeric_detection = mappings.get("numeric_detection", False) in (True, "true")
        self.nested = 0

    def _container(
        self, container: dict[str, Any], parts: list[str], path: str, dynamic: Any, name: str
    ) -> tuple[dict[str, Any], str, Any] | None:
        """The object mapping holding the last part of a dotted name, made when missing."""
        for part in parts[:-1]:
            full = f"{path}.{part}" if path else part
            spec = container.get("properties", {}).get(part)
            if spec is None:
                if dynamic in (False, "false", "runtime"):
                    return None
                if dynamic == "strict":
                    raise self._strict(part, path)
                spec = container.setdefault("properties", {})[part] = {"properties": {}}
            elif field_type(spec) not in OBJECTS:
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"Could not dynamically add mapping for field [{path + '.' if path else ''}"
                    f"{name}]. Existing mapping for [{full}] must be of type object but found "
                    f"[{field_type(spec)}].",
                )
            dynamic = spec.get("dynamic", dynamic)
            container, path = spec, full
        return container, path, dynamic

    def _strict(self, key: str, path: str) -> EsError:
        return EsError(
            400,
            "strict_dynamic_mapping_exception",
            f"mapping set to strict, dynamic introduction of [{key}] within "
            f"[{path or '_doc'}] is not allowed",
        )

    def parse_object(
        self, container: dict[str, Any], obj: dict[str, Any], path: str, dynamic: Any
    ) -> None:
        for name, value in obj.items():
            parts = split_field_name(name)
            found = self._container(container, parts, path, dynamic, name)
            if found is None:
                continue
            holder, holder_path, holder_dynamic = found
            key = parts[-1]
            full = f"{holder_path}.{key}" if holder_path else key
            spec = holder.get("properties", {}).get(key)
            if spec is None:
                if value is None or holder_dynamic in (False, "false", "runtime"):
                    continue
                if holder_dynamic == "strict":
                    raise self._strict(key, holder_path)
                spec = self.infer(value)
                if spec is None:
                    continue
                holder.setdefault("properties", {})[key] = spec
            self.parse_value(spec, value, full, holder_dynamic)

    def infer(self, value: Any) -> dict[str, Any] | None:
        """ES's default dynamic mapping for a new field's first value."""
        present = [item for item in _flatten(value) if item is not None]
        if not present:
            return None
        first = present[0]
        if isinstance(first, dict):
            return {"properties": {}}
        if isinstance(first, bool):
            return {"type": "boolean"}
        if isinstance(first, int):
            return {"type": "long"}
        if isinstance(first, float):
            return {"type": "float"}
        if self.date_detection and _ISO_DATE.match(str(first)) and parses_as_date(str(first)):
            return {"type": "date"}
        if self.numeric_detection and isinstance(first, str) and to_decimal(first) is not None:
            return {"type": "long" if re.fullmatch(r"-?\d+", first.strip()) else "float"}
        return {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}

    def parse_value(self, spec: dict[str, Any], value: Any, full: str, dynamic: Any) -> None:
        ftype = field_type(spec)
        if value is None or ftype in UNCHECKED:
            return
        if ftype in OBJECTS:
            if spec.get("enabled", True) is False:
                return
            for item in _flatten(value):
                if ftype == "nested" and isinstance(item, dict):
                    self.nested += 1
                if item is None:
                    continue
                if not isinstance(item, dict):
                    raise EsError(
                        400,
                        "document_parsing_exception",
                        f"object mapping for [{full}] tried to parse field [{full}] as object, "
                        "but found a concrete value",
                    )
                self.parse_object(spec, item, full, spec.get("dynamic", dynamic))
            return
        if ftype == "dense_vector":
            self.parse_vector(spec, value, full)
            return
        for item in _flatten(value):
            problem = None if item is None else _scalar_problem(ftype, spec, item)
            if problem is not None:
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"failed to parse field [{full}] of type [{ftype}] in document with id "
                    f"'{self.doc_id}'. Preview of field's value: '{_preview(item)}'",
                    caused_by=problem,
                )

    def parse_vector(self, spec: dict[str, Any], value: Any, full: str) -> None:
        # ES parses dense vectors outside the generic field path, hence "failed to parse: ...".
        problem: dict[str, str] | None = None
        if not isinstance(value, list):
            problem = _cause(
                "parsing_exception",
                "Failed to parse object: expecting token of type [START_ARRAY] but found "
                f"[{token_name(value)}]",
            )
        elif any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
            bad = next(v for v in value if isinstance(v, bool) or not isinstance(v, int | float))
            problem = _cause(
                "parsing_exception",
                "Failed to parse object: expecting token of type [VALUE_NUMBER] but found "
                f"[{token_name(bad)}]",
            )
        elif "dims" in spec and len(value) != spec["dims"]:
            problem = _cause(
                "illegal_argument_exception",
                f"The [dense_vector] field [{full}] in doc [document with id '{self.doc_id}'] "
                f"has a different number of dimensions [{len(value)}] than defined in the "
                f"mapping [{spec['dims']}]",
            )
        if problem is not None:
            raise EsError(
                400,
                "document_parsing_exception",
                f"failed to parse: {problem['reason']}",
                caused_by=problem,
            )
        if "dims" not in spec:
            # ES 8 fixes the dimension count from the first vector it sees.
            spec["dims"] = len(value)


def _scalar_problem(ftype: str, spec: dict[str, Any], value: Any) -> dict[str, str] | None:
    """Why ES would refuse `value` for a field of `ftype` (its `caused_by`), or None."""
    if isinstance(value, dict):
        return _cause("illegal_state_exception", "Can't get text on a START_OBJECT")
    if ftype in TEXTUAL:
        return None
    if ftype in NUMERIC:
        return _number_problem(ftype, value)
    if ftype == "boolean":
        if value is True or value == "true" or value in _FALSY:
            return None
        return _cause(
            "illegal_argument_exception",
            f"Failed to parse value [{_preview(value)}] as only [true] or [false] are allowed.",
        )
    # date and date_nanos; custom formats are accepted unchecked.
    if spec.get("format", DEFAULT_DATE_FORMAT) != DEFAULT_DATE_FORMAT:
        return None
    if to_decimal(value) is not None or (isinstance(value, str) and parses_as_date(value)):
        return _nanos_problem(value) if ftype == "date_nanos" else None
    return _cause(
        "illegal_argument_exception",
        f"failed to parse date field [{_preview(value)}] with format [{DEFAULT_DATE_FORMAT}]",
    )


def _nanos_problem(value: Any) -> dict[str, str] | None:
    """A `date_nanos` holds 1970 to 2262 only (nanoseconds since the epoch in a long)."""
    millis = date_millis(value)
    if millis is None:
        return None
    if millis < 0:
        reason = "is before the epoch in 1970"
    elif millis * 1_000_000 > 2**63 - 1:
        reason = "is after 2262-04-11T23:47:16.854775807"
    else:
        return None
    return _cause(
        "illegal_argument_exception",
        f"date[{value}] {reason} and cannot be stored in nanosecond resolution",
    )


def _number_problem(ftype: str, value: Any) -> dict[str, str] | None:
    if isinstance(value, bool):
        return _cause(
            "illegal_argument_exception", f"Current token ({token_name(value)}) not numeric"
        )
    number = to_decimal(value)
    if number is None:
        return _cause("number_format_exception", f'For input string: "{value}"')
    if ftype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[ftype]
        if not low <= int(number) <= high:  # ES coerces by truncating the fraction
            article = "an" if ftype[0] in "aeiou" else "a"
            reason = f"Value [{value}] is out of range for {article} {ftype}"
            return _cause("illegal_argument_exception", reason)
    elif _overflows(ftype, number):
        return _cause(
            "illegal_argument_exception",
            f"[{ftype}] supports only finite values, but got [Infinity]",
        )
    return None


def _overflows(ftype: str, number: Decimal) -> bool:
    """Whether the value rounds to infinity in the field's precision, as Java's parsing does."""
    return math.isinf(in_precision(number, ftype))
