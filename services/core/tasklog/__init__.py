"""The task log: the durable record of every accepted write and its fate."""

from services.core.tasklog.models import TaskLog, TaskStatus
from services.core.tasklog.repository import Claim, TaskLogRepository

__all__ = ["Claim", "TaskLog", "TaskLogRepository", "TaskStatus"]
