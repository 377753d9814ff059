"""The 11 ChatbotMobile tasks, declared from the operation table."""

from __future__ import annotations

import os
from typing import Any

from services.core.chatbot.client import ChatbotClient
from services.core.chatbot.operations import OPERATIONS, HttpEnv, Operation
from services.core.config import get_settings
from services.core.storage import make_storage
from services.core.taskdefs import CHATBOT_TASKS
from services.core.tracking import Body, TaskContext
from services.core.tracking.task import TrackedTask, tracked_task

_envs: dict[int, HttpEnv] = {}


def http_env() -> HttpEnv:
    """This process's client and storage (one pool per pool process, built after fork)."""
    pid = os.getpid()
    if pid not in _envs:
        settings = get_settings()
        _envs[pid] = HttpEnv(ChatbotClient(settings), make_storage(settings), settings)
    return _envs[pid]


def _body(operation: Operation) -> Body:
    def body(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
        return operation(http_env(), ctx, payload)

    body.__doc__ = operation.__doc__
    return body


TASKS: dict[str, TrackedTask] = {
    spec.name: tracked_task(spec)(_body(OPERATIONS[spec.name])) for spec in CHATBOT_TASKS
}
