"""Index settings: the ones the stand-in claims, parsed and checked as ES does; others refused.

Settings are kept as ES keeps them (flat `index.*` keys, string values). The claimed ones:

- `number_of_shards`, `number_of_routing_shards`: documents are routed to shards as in ES;
- `number_of_replicas`: reported (health is yellow while replicas cannot be assigned);
- `refresh_interval`: when writes become searchable (1 s by default, `-1` never by itself);
- `gc_deletes`: how long delete tombstones take part in version checks;
- `max_result_window`, `max_terms_count`, `mapping.nested_objects.limit`: limits ES applies;
- `soft_deletes.enabled` (true only, as in ES 8), and, with no effect on a one-node in-memory
  cluster, `routing.rebalance.enable`, `max_docvalue_fields_search`, `max_script_fields`.
"""

from __future__ import annotations

import re
from typing import Any

from tools.standins.es.errors import EsError, bad_request, unsupported

DEFAULTS = {
    "index.number_of_shards": "1",
    "index.number_of_replicas": "1",
}
_TIME_UNITS = {
    "nanos": 1e-9,
    "micros": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_TIME_VALUE = re.compile(r"^(\d+(?:\.\d+)?)(nanos|micros|ms|s|m|h|d)$")
# Integer settings and their minimum.
_INTEGERS = {
    "index.number_of_shards": 1,
    "index.number_of_replicas": 0,
    "index.number_of_routing_shards": 1,
    "index.max_result_window": 1,
    "index.max_terms_count": 1,
    "index.mapping.nested_objects.limit": 0,
    "index.max_docvalue_fields_search": 0,
    "index.max_script_fields": 0,
}
_TIMES = frozenset({"index.refresh_interval", "index.gc_deletes"})
_CHOICES = {
    "index.routing.rebalance.enable": frozenset({"all", "primaries", "replicas", "none"}),
    "index.soft_deletes.enabled": frozenset({"true"}),
}
CLAIMED_SETTINGS = frozenset(_INTEGERS) | _TIMES | frozenset(_CHOICES)


def time_value(text: str, setting: str) -> float:
    """Seconds in an ES time value (`500ms`, `1s`, `2m`; `0` and `-1` as they are)."""
    if text.strip() in ("0", "-1"):
        return float(text)
    match = _TIME_VALUE.match(text.strip())
    if match is None:
        raise bad_request(
            f"failed to parse setting [{setting}] with value [{text}] as a time value: unit is "
            "missing or unrecognized"
        )
    return float(match.group(1)) * _TIME_UNITS[match.group(2)]


def flatten_settings(settings: object) -> dict[str, str]:
    """Index settings as ES keeps them: flat `index.*` keys with string values."""
    if not isinstance(settings, dict):
        raise EsError(400, "illegal_argument_exception", "Failed to parse settings: not an object")
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
            return
        key = prefix if prefix.startswith("index.") else f"index.{prefix}"
        if isinstance(value, list):
            raise unsupported(f"setting [{key}] with a list value")
        flat[key] = str(value).lower() if isinstance(value, bool) else str(value)

    walk("", settings)
    return flat


def check_settings(flat: dict[str, str]) -> dict[str, str]:
    """The settings of a new index, defaults included; 400 for what ES or the stand-in refuses."""
    for key, value in flat.items():
        if key not in CLAIMED_SETTINGS:
            raise unsupported(f"setting [{key}]")
        if key in _INTEGERS:
            minimum = _INTEGERS[key]
            if not re.fullmatch(r"-?\d+", value) or int(value) < minimum:
                raise bad_request(
                    f"Failed to parse value [{value}] for setting [{key}] must be >= {minimum}"
                )
        elif key in _TIMES:
            seconds = time_value(value, key)
            if seconds < 0 and not (key == "index.refresh_interval" and value.strip() == "-1"):
                raise bad_request(
                    f"failed to parse value [{value}] for setting [{key}], must be >= [0ms]"
                )
        elif value not in _CHOICES[key]:
            if key == "index.soft_deletes.enabled":
                raise bad_request(
                    "Creating indices with soft-deletes disabled is no longer supported. Please "
                    "do not specify a value for setting [index.soft_deletes.enabled]."
                )
            raise bad_request(f"illegal value can't update [{key}] from [all] to [{value}]")
    settings = {**DEFAULTS, **flat}
    shards = int(settings["index.number_of_shards"])
    routing_shards = settings.get("index.number_of_routing_shards")
    if routing_shards is not None and (
        int(routing_shards) < shards or int(routing_shards) % shards
    ):
        raise bad_request(
            f"the number of source shards [{shards}] must be a factor of [{routing_shards}]"
        )
    return settings


def refresh_interval_s(settings: dict[str, str], default: str = "1s") -> float | None:
    """Seconds between scheduled refreshes; None when disabled (`-1`)."""
    value = settings.get("index.refresh_interval", default)
    seconds = time_value(value, "index.refresh_interval")
    return None if seconds < 0 else max(seconds, 1e-3)


def int_setting(settings: dict[str, str], key: str, default: int) -> int:
    """An integer setting, or its ES default."""
    return int(settings.get(key, default))
