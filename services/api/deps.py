"""FastAPI dependencies, one place: settings, task log, enqueuer, broker clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from redis import Redis
from sqlalchemy import Engine

from services.core.chatbot.client import ChatbotClient
from services.core.config import Settings
from services.core.enqueue import Enqueuer
from services.core.storage import Storage
from services.core.storage.records import StoredFiles
from services.core.tasklog.repository import TaskLogRepository


@dataclass
class Runtime:
    """Objects built once per API process and shared by requests."""

    settings: Settings
    engine: Engine
    repo: TaskLogRepository
    celery: Celery
    redis: Redis
    enqueuer: Enqueuer
    storage: Storage
    stored_files: StoredFiles
    chatbot: ChatbotClient


def get_runtime(request: Request) -> Runtime:
    """The process runtime stored on the app at start."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
