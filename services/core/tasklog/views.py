"""What a task's row shows to whoever reads it (an API caller, an operator): one rule."""

from __future__ import annotations

from typing import Any

from services.core.secrecy import Redactor
from services.core.storable import shown
from services.core.tasklog.models import TaskLog

_redact = Redactor()
HIDDEN = frozenset({"sealed_secrets"})
# Levels of a payload or result an answer shows (the edge accepts at most DATA_MAX_DEPTH of
# caller data, which sits a few levels down in a payload).
SHOWN_DEPTH = 210


def redacted(row: TaskLog) -> dict[str, Any]:
    """Every column of the row but its sealed secrets; payload and result with secret-looking
    fields redacted (a payload is customer data, a result may echo it).

    Whatever was stored renders: levels past SHOWN_DEPTH, lone surrogates and non-finite
    numbers are replaced first (a value stored before the edge refused them, or by code that
    enqueued without the API), so redaction, serializers and the answer never fail on them.
    """
    fields = {c.name: getattr(row, c.name) for c in TaskLog.__table__.columns}
    for name in HIDDEN:
        fields.pop(name)
    fields["payload"] = _redact.value(shown(row.payload, max_depth=SHOWN_DEPTH))
    fields["result"] = _redact.value(shown(row.result, max_depth=SHOWN_DEPTH))
    return fields
