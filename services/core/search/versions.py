"""Write versions: which of two writes of one document is newer.

A write's version is the caller's `version` when given, else the item's `updated_at`, else the
moment the API accepted the write; times count in microseconds since the epoch. Elasticsearch
keeps the highest version (external versioning), so a late retry of an older write loses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def micros(at: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return int(at.timestamp() * 1_000_000)


def _parse_updated_at(value: Any) -> int | None:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return micros(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    return None


def write_version(explicit: int | None, data: dict[str, Any] | None, accepted_at: datetime) -> int:
    """The version of a write accepted at `accepted_at`."""
    if explicit is not None:
        return explicit
    from_data = _parse_updated_at((data or {}).get("updated_at"))
    return from_data if from_data is not None else micros(accepted_at)
