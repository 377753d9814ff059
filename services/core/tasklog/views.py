"""What a task's row shows to whoever reads it (an API caller, an operator): one rule."""

from __future__ import annotations

from typing import Any

from services.core.secrecy import Redactor
from services.core.tasklog.models import TaskLog

_redact = Redactor()
HIDDEN = frozenset({"sealed_secrets"})


def redacted(row: TaskLog) -> dict[str, Any]:
    """Every column of the row but its sealed secrets; payload and result with secret-looking
    fields redacted (a payload is customer data, a result may echo it)."""
    fields = {c.name: getattr(row, c.name) for c in TaskLog.__table__.columns}
    for name in HIDDEN:
        fields.pop(name)
    fields["payload"] = _redact.value(row.payload)
    fields["result"] = _redact.value(row.result)
    return fields
