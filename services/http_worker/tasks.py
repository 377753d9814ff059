"""The 11 ChatbotMobile tasks, declared from the operation table."""

from __future__ import annotations

from typing import Any

from services.core.chatbot.client import ChatbotClient
from services.core.chatbot.operations import OPERATIONS, HttpEnv, Operation
from services.core.config import get_settings
from services.core.perprocess import per_process
from services.core.storage import make_storage
from services.core.taskdefs import CHATBOT_TASKS
from services.core.tracking import Body, TaskContext
from services.core.tracking.task import TrackedTask, tracked_task


@per_process
def http_env() -> HttpEnv:
    """This process's client and storage (one pool per pool process, built after fork)."""
    settings = get_settings()
    return HttpEnv(ChatbotClient(settings), make_storage(settings), settings)


def _body(operation: Operation) -> Body:
    def body(ctx: TaskContext, payload: dict[str, Any]) -> dict[str, Any]:
        return operation(http_env(), ctx, payload)

    body.__doc__ = operation.__doc__
    return body


TASKS: dict[str, TrackedTask] = {
    spec.name: tracked_task(spec)(_body(OPERATIONS[spec.name])) for spec in CHATBOT_TASKS
}
