"""Canary tasks: a no-op per worker queue that proves API -> broker -> worker -> log works."""

from __future__ import annotations

import socket
from typing import Any

from services.core.taskdefs import CANARY, Queue
from services.core.tracking import TaskContext
from services.core.tracking.task import tracked_task


def _pong(queue: Queue) -> Any:
    def body(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer with the worker that ran the canary."""
        return {"pong": True, "queue": queue.value, "host": socket.gethostname()}

    return body


canary_es = tracked_task(CANARY[Queue.ES])(_pong(Queue.ES))
canary_http = tracked_task(CANARY[Queue.HTTP])(_pong(Queue.HTTP))
