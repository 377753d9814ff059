"""Field values as a query reads them: from `_source` by dotted path, in their type's form.

Numbers compare numerically (numeric strings included; integer types truncate a fraction, as
ES coerces), booleans and dates by value (dates as epoch milliseconds), everything else by its
exact text.
"""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tools.standins.es.mapping import INTEGER_RANGES, NUMERIC, to_decimal


def values_at(source: Any, parts: list[str]) -> list[Any]:
    """Every value at a dotted path in `_source`, through arrays and dotted keys."""
    if not parts:
        if isinstance(source, list):
            return [v for item in source for v in values_at(item, [])]
        return [] if source is None else [source]
    if isinstance(source, list):
        return [v for item in source for v in values_at(item, parts)]
    if not isinstance(source, dict):
        return []
    found: list[Any] = []
    for split in range(1, len(parts) + 1):
        key = ".".join(parts[:split])
        if key in source:
            found.extend(values_at(source[key], parts[split:]))
    return found


def date_millis(value: Any) -> Decimal | None:
    number = to_decimal(value)
    if number is not None or not isinstance(value, str):
        return number
    text = value.strip()
    if len(text) == 4 and text.isdigit():
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Decimal(str(moment.timestamp())) * 1000


def comparable(value: Any, ftype: str) -> Any:
    """A value in the form its field type compares by; None if it cannot be one."""
    if isinstance(value, dict | list):
        return None
    if ftype in NUMERIC:
        number = to_decimal(value)
        if number is None or ftype in INTEGER_RANGES:
            return None if number is None else Decimal(int(number))
        return in_precision(number, ftype)
    if ftype == "boolean":
        return {True: True, "true": True, False: False, "false": False, "": False}.get(value)
    if ftype in ("date", "date_nanos"):
        return date_millis(value)
    return value if isinstance(value, str) else json.dumps(value)


def in_precision(number: Decimal, ftype: str) -> float:
    """A number as a field of `ftype` holds it: rounded to float32 or float16, as ES stores it
    (a value beyond the type's range becomes an infinity, which is how ES clamps a bound)."""
    value = float(number)
    packing = {"float": "f", "half_float": "e"}.get(ftype)
    if packing is None:
        return value
    try:
        rounded: float = struct.unpack(packing, struct.pack(packing, value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)
    return rounded


def token_name(value: Any) -> str:
    """The JSON token Jackson (hence ES) names for a value, as its messages show it."""
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if value is None:
        return "VALUE_NULL"
    if isinstance(value, int | float):
        return "VALUE_NUMBER"
    return "VALUE_STRING"
