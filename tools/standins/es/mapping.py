"""Mappings: checking a definition, merging updates (PUT _mapping), looking fields up.

Documents are parsed against them in `documents`.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from tools.standins.es.errors import EsError, bad_request, unsupported

INTEGER_RANGES = {
    "byte": (-(2**7), 2**7 - 1),
    "short": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
    "unsigned_long": (0, 2**64 - 1),
}
FLOAT_LIMITS = {"half_float": 65504.0, "float": 3.4028235e38, "double": 1.7976931348623157e308}
FLOAT_LIMITS["scaled_float"] = FLOAT_LIMITS["double"]
NUMERIC = frozenset(INTEGER_RANGES) | frozenset(FLOAT_LIMITS)
TEXTUAL = frozenset({"keyword", "text", "match_only_text", "wildcard", "constant_keyword"})
OBJECTS = frozenset({"object", "nested"})
VALIDATED = NUMERIC | TEXTUAL | OBJECTS | {"boolean", "date", "date_nanos", "dense_vector"}
# Real ES types accepted in mappings whose values the stand-in does not check.
UNCHECKED = frozenset(
    {
        "ip",
        "geo_point",
        "geo_shape",
        "point",
        "shape",
        "binary",
        "flattened",
        "completion",
        "search_as_you_type",
        "sparse_vector",
        "rank_feature",
        "rank_features",
        "token_count",
        "version",
        "histogram",
        "alias",
        "percolator",
        "join",
        "semantic_text",
        "integer_range",
        "long_range",
        "float_range",
        "double_range",
        "date_range",
        "ip_range",
    }
)
# Root mapping keys the stand-in honours; the rest of ES's are refused as unsupported.
_ROOT_KEYS = frozenset(
    {"properties", "dynamic", "_routing", "_meta", "date_detection", "numeric_detection"}
)
# Real ES root keys the stand-in does not implement (an empty value is accepted).
_UNSUPPORTED_ROOT_KEYS = frozenset(
    {
        "_source",
        "runtime",
        "dynamic_templates",
        "dynamic_date_formats",
        "enabled",
        "subobjects",
        "_data_stream_timestamp",
        "_field_names",
    }
)
_UNSUPPORTED_FIELD_KEYS = frozenset({"copy_to", "subobjects", "runtime"})
_DYNAMIC_VALUES = (True, False, "true", "false", "strict", "runtime")
DEFAULT_DATE_FORMAT = "strict_date_optional_time||epoch_millis"
TYPED_MAPPING = "_doc"


def field_type(spec: dict[str, Any]) -> str:
    """A field's type; a field without one is an object, as in ES."""
    return str(spec.get("type", "object"))


def _mapping_error(reason: str, cause: str | None = None) -> EsError:
    caused_by = None if cause is None else {"type": "illegal_argument_exception", "reason": cause}
    return EsError(
        400, "mapper_parsing_exception", f"Failed to parse mapping: {reason}", caused_by=caused_by
    )


def _expand(properties: dict[str, Any]) -> dict[str, Any]:
    """Dotted field names as the objects they stand for: `a.b` is `b` inside object `a`."""
    expanded: dict[str, Any] = {}
    for name, spec in properties.items():
        if name == "":
            raise _mapping_error(
                "field name cannot be an empty string", "field name cannot be an empty string"
            )
        parts = name.split(".")
        if "." in name and not any(parts):
            raise _mapping_error(
                "field name cannot contain only dots", "field name cannot contain only dots"
            )
        if "" in parts:
            reason = (
                "field name starting or ending with a [.] makes object resolution ambiguous: "
                f"[{name}]"
            )
            raise _mapping_error(reason, reason)
        node = {"properties": {parts[-1]: spec}} if len(parts) > 1 else None
        for part in reversed(parts[1:-1]):
            node = {"properties": {part: node}}
        target = parts[0]
        value = spec if node is None else node
        if target in expanded and isinstance(value, dict) and isinstance(expanded[target], dict):
            _merge_into(expanded[target], value, target)
        else:
            expanded[target] = value
    return expanded


def _check_properties(properties: object, path: str) -> dict[str, Any]:
    if not isinstance(properties, dict):
        raise _mapping_error(f"Expected map for property [properties] on field [{path}]")
    checked: dict[str, Any] = {}
    for name, spec in _expand(properties).items():
        full = f"{path}.{name}" if path else name
        if not isinstance(spec, dict):
            raise _mapping_error(f"Expected map for property [{name}] on field [{full}]")
        checked[name] = _check_field(spec, name, full)
    return checked


def _check_field(spec: dict[str, Any], name: str, full: str) -> dict[str, Any]:
    ftype = field_type(spec)
    if ftype not in VALIDATED and ftype not in UNCHECKED:
        raise _mapping_error(
            f"The mapper type [{ftype}] declared on field [{name}] does not exist. It might have "
            "been created within a future version or requires a plugin to be installed. Check "
            "the documentation."
        )
    for key in _UNSUPPORTED_FIELD_KEYS & set(spec):
        raise unsupported(f"mapping parameter [{key}] (on field [{full}])")
    checked = dict(spec)
    if ftype in OBJECTS:
        if spec.get("dynamic", True) not in _DYNAMIC_VALUES:
            raise _mapping_error(f"unknown dynamic value [{spec['dynamic']}] on field [{full}]")
        if "properties" in spec:
            checked["properties"] = _check_properties(spec["properties"], full)
    if ftype == "scaled_float" and "scaling_factor" not in spec:
        raise _mapping_error("Field [scaling_factor] is required")
    if ftype == "dense_vector" and "dims" in spec:
        dims = spec["dims"]
        if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 4096:
            raise _mapping_error(
                f"The number of dimensions should be in the range [1, 4096] but was [{dims}]"
            )
    if "fields" in spec:
        checked["fields"] = _check_properties(spec["fields"], full)
    return checked


def check_mappings(mappings: object, *, typed_allowed: bool = True) -> dict[str, Any]:
    """Validate a mapping definition (the `mappings` object); a private, expanded copy of it."""
    if not isinstance(mappings, dict):
        raise _mapping_error("mappings must be an object")
    if list(mappings) == [TYPED_MAPPING] and isinstance(mappings[TYPED_MAPPING], dict):
        if not typed_allowed:
            raise bad_request("Types cannot be provided in put mapping requests")
        return check_mappings(mappings[TYPED_MAPPING])  # ES 8 still reads a create's wrapper
    for key in sorted(_UNSUPPORTED_ROOT_KEYS & set(mappings)):
        if mappings[key] not in ({}, [], None):
            raise unsupported(f"mapping parameter [{key}]")
    unknown = sorted(set(mappings) - _ROOT_KEYS - _UNSUPPORTED_ROOT_KEYS)
    if unknown:
        listed = ", ".join(f"{key} : {json.dumps(mappings[key])}" for key in unknown)
        raise _mapping_error(f"Root mapping definition has unsupported parameters:  [{listed}]")
    if mappings.get("dynamic", True) not in _DYNAMIC_VALUES:
        raise _mapping_error(f"unknown dynamic value [{mappings['dynamic']}]")
    checked = {k: copy.deepcopy(v) for k, v in mappings.items() if k in _ROOT_KEYS}
    if "properties" in mappings:
        checked["properties"] = _check_properties(mappings["properties"], "")
    return checked


def merge_mappings(current: dict[str, Any], update: object) -> dict[str, Any]:
    """`current` with `update` merged in (PUT _mapping); changing a field's type is refused."""
    merged = copy.deepcopy(current)
    _merge_into(merged, check_mappings(update, typed_allowed=False), "")
    return merged


def _merge_into(target: dict[str, Any], update: dict[str, Any], path: str) -> None:
    for key, value in update.items():
        if key not in ("properties", "fields"):
            target[key] = value
            continue
        properties = target.setdefault(key, {})
        for name, spec in value.items():
            full = f"{path}.{name}" if path else name
            old = properties.get(name)
            if old is None:
                properties[name] = spec
                continue
            old_type, new_type = field_type(old), field_type(spec)
            if old_type != new_type:
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"mapper [{full}] cannot be changed from type [{old_type}] to [{new_type}]",
                )
            if new_type == "dense_vector" and old.get("dims", spec.get("dims")) != spec.get(
                "dims", old.get("dims")
            ):
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    f"Mapper for [{full}] conflicts with existing mapper:\n\t"
                    f"Cannot update parameter [dims] from [{old['dims']}] to [{spec['dims']}]",
                )
            _merge_into(old, spec, full)


def lookup_field(mappings: dict[str, Any], path: str) -> tuple[str, dict[str, Any] | None]:
    """Where `path` reads its values from in `_source`, and its mapping if it has one.

    A multi-field such as `name.keyword` reads the source of its parent, `name`.
    """
    properties = mappings.get("properties", {})
    parts = path.split(".")
    source_parts: list[str] = []
    spec: dict[str, Any] | None = None
    for index, part in enumerate(parts):
        if spec is not None and part in spec.get("fields", {}) and index == len(parts) - 1:
            return ".".join(source_parts), spec["fields"][part]
        spec = properties.get(part) if isinstance(properties, dict) else None
        source_parts.append(part)
        if spec is None:
            return path, None
        properties = spec.get("properties", {})
    return path, spec


def to_decimal(value: Any) -> Decimal | None:
    """A finite number from a JSON number or a numeric string, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None
