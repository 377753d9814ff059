"""Elasticsearch errors as data, rendered in the shapes Elasticsearch answers with."""

from __future__ import annotations

from typing import Any


class EsError(Exception):
    """An Elasticsearch exception: HTTP status, `type`, `reason` and extra fields."""

    def __init__(
        self,
        status: int,
        type_: str,
        reason: str,
        *,
        caused_by: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(f"{type_}: {reason}")
        self.status = status
        self.type = type_
        self.reason = reason
        self.caused_by = caused_by
        self.fields = fields
        # The `root_cause` list; by default the error itself.
        self.root_causes: list[dict[str, Any]] | None = None

    def cause(self) -> dict[str, Any]:
        """The exception object, as in a bulk item's `error` or a response's `error`."""
        body: dict[str, Any] = {"type": self.type, "reason": self.reason, **self.fields}
        if self.caused_by is not None:
            body["caused_by"] = self.caused_by
        return body

    def body(self) -> dict[str, Any]:
        """The whole error response body: `{"error": {...root_cause...}, "status": N}`."""
        roots = self.root_causes or [{"type": self.type, "reason": self.reason, **self.fields}]
        return {"error": {"root_cause": roots, **self.cause()}, "status": self.status}


def index_not_found(name: str) -> EsError:
    """404 for an index that does not exist."""
    fields: dict[str, Any] = {
        "resource.type": "index_or_alias",
        "resource.id": name,
        "index_uuid": "_na_",
        "index": name,
    }
    return EsError(404, "index_not_found_exception", f"no such index [{name}]", **fields)


def bad_request(reason: str, type_: str = "illegal_argument_exception") -> EsError:
    """400 for a request Elasticsearch refuses before touching any data."""
    return EsError(400, type_, reason)


def validation_failed(*problems: str) -> EsError:
    """400 `action_request_validation_exception` listing numbered problems like ES."""
    listed = "".join(f"{n}: {problem};" for n, problem in enumerate(problems, start=1))
    return EsError(400, "action_request_validation_exception", f"Validation Failed: {listed}")


def unsupported(what: str) -> EsError:
    """400 for a real Elasticsearch feature this stand-in does not implement."""
    return EsError(400, "illegal_argument_exception", f"the ES stand-in does not support {what}")


def version_conflict(
    doc_id: str, detail: str, *, index: str, index_uuid: str, shard: int = 0
) -> EsError:
    """409 `version_conflict_engine_exception` with ES's reason format."""
    return EsError(
        409,
        "version_conflict_engine_exception",
        f"[{doc_id}]: version conflict, {detail}",
        index_uuid=index_uuid,
        shard=str(shard),
        index=index,
    )


class PlainEsError(EsError):
    """An error ES answers with a bare string: `{"error": "...", "status": N}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, "", message)

    def body(self) -> dict[str, Any]:
        """The bare-string error body."""
        return {"error": self.reason, "status": self.status}
