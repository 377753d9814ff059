"""Write versions: one version domain for every write to a catalog item.

Every write (upsert, delete, bulk item, delete-all) is versioned by its place in acceptance
order: `seq`, drawn from one monotonic sequence in the task log when the write is accepted
(and kept by a manual retry of a catalog write). Elasticsearch gets `SEQ_VERSION_BASE + seq`
as its external version, so whatever order retries arrive in, the write accepted last wins,
and tombstones and delete-all watermarks compare numbers of the same kind.

A caller's `version` (or the item's `updated_at`) is a number of another kind and is never
compared with those. It only refuses, at acceptance, a write older than one the caller sent
before for the same item (`caller_versions`); a refused write ends as superseded.

Versions of writes accepted before this rule (caller versions and acceptance microseconds)
are all below 2**62, hence older than every write accepted under it: the delete memory they
left still refuses old writes in flight and never refuses a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SEQ_VERSION_BASE = 2**62
# Where a caller version came from; versions of different sources are never compared.
EXPLICIT = "version"
UPDATED_AT = "updated_at"


@dataclass(frozen=True)
class CallerVersion:
    """A version the caller gave, and where it came from."""

    value: int
    source: str

    def as_payload(self) -> dict[str, Any]:
        """The payload fields that carry it."""
        return {"caller_version": self.value, "caller_version_source": self.source}


def es_version(seq: int) -> int:
    """The external Elasticsearch version of the write accepted as number `seq`."""
    return SEQ_VERSION_BASE + seq


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


def caller_version(explicit: int | None, data: dict[str, Any] | None) -> CallerVersion | None:
    """The caller's version of a write: `version` if given, else the item's `updated_at`."""
    if explicit is not None:
        return CallerVersion(explicit, EXPLICIT)
    from_data = _parse_updated_at((data or {}).get("updated_at"))
    return CallerVersion(from_data, UPDATED_AT) if from_data is not None else None


def from_payload(payload: dict[str, Any]) -> CallerVersion | None:
    """The caller version a payload (or bulk item) carries, if any."""
    value = payload.get("caller_version")
    if value is None:
        return None
    return CallerVersion(int(value), str(payload.get("caller_version_source") or EXPLICIT))


def write_version(payload: dict[str, Any], seq: int) -> int:
    """The Elasticsearch version of a payload's write.

    A payload accepted before the acceptance-order rule carries its own `version`; it keeps
    it (below 2**62, so older than anything accepted since).
    """
    legacy = payload.get("version")
    return int(legacy) if legacy is not None else es_version(seq)
