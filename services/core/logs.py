"""Structured JSON logs: one object per line, with the task id and name when in a task."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from services.core.secrecy import Redactor

# Attributes every LogRecord has; anything else was passed through `extra=` and is a field.
# (uvicorn adds color_message, a copy of the message with terminal colours.)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_redactor = Redactor()


class JsonFormatter(logging.Formatter):
    """Formats records as JSON with extras as fields and secrets masked."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self._process,
            "msg": _redactor.text(record.getMessage()),
        }
        if self._process == "worker":  # only workers run tasks
            entry.update(_task_context())
        celery_record = record.name.startswith("celery")
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if celery_record and key == "data":
                # Celery's trace lines attach the task's arguments and return value: customer
                # data. Their message already names the task and its id.
                continue
            entry[key] = _redactor.value(value)
        if record.exc_info:
            entry["exc"] = _redactor.text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def _task_context() -> dict[str, Any]:
    # Imported lazily: the API process logs too and has no current task.
    from celery import current_task

    if not current_task:  # the proxy is falsy outside a task
        return {}
    request = current_task.request
    if request is None or request.id is None:
        return {}
    context = {"task_id": request.id, "task_name": current_task.name}
    queue = (request.delivery_info or {}).get("routing_key")
    if queue:
        context["queue"] = queue
    return context


def configure(process: str, *, level: str = "INFO", json_lines: bool = True) -> None:
    """Send this process's logs to stderr, as JSON lines unless `json_lines` is False."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter(process))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {process} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
