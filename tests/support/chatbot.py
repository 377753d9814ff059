"""A ChatbotMobile test bench: the stand-in, an http-worker and the API sharing local storage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from services.core.config import Settings, get_settings
from services.core.db import session_factory
from services.core.tasklog.models import TaskLog
from services.core.tasklog.repository import TaskLogRepository
from tests.support.databases import own_database
from tests.support.flow import wait_finished
from tests.support.procs import BENCH_SCHEDULER, Worker, free_port, scheduler
from tests.support.server import running_api
from tests.support.standins import Standin

TOKEN = "bench-chatbot-token"


@dataclass
class ChatBench:
    """Everything a ChatbotMobile test talks to."""

    settings: Settings
    standin: Standin
    worker: Worker
    api: httpx.Client
    repo: TaskLogRepository
    storage_dir: Path

    def upstream(self, path: str, **params: Any) -> Any:
        """A read straight from the stand-in."""
        answer = httpx.get(
            f"{self.standin.url}{path}", params=params, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        answer.raise_for_status()
        return answer.json() if "json" in answer.headers.get("content-type", "") else answer.text

    def finished(self, task_id: str, timeout_s: float = 30) -> TaskLog:
        """The task's row once finished."""
        return wait_finished(self.repo, task_id, timeout_s)

    def succeeded(self, answer: httpx.Response, timeout_s: float = 30) -> TaskLog:
        """The row of the task an accepted write queued, once it succeeded."""
        assert answer.status_code == 202, answer.text
        row = self.finished(answer.json()["task_id"], timeout_s)
        assert row.status == "success", (row.status, row.error_message)
        return row

    def stored_files(self) -> list[Path]:
        """Files in the local storage directory."""
        return [p for p in self.storage_dir.rglob("*") if p.is_file()]


@contextmanager
def chat_bench(
    log_dir: Path,
    *,
    worker_env: dict[str, str] | None = None,
    settings_update: dict[str, Any] | None = None,
) -> Iterator[ChatBench]:
    """Start the bench; `worker_env`/`settings_update` adjust the worker and the API."""
    with ExitStack() as stack:
        standin = Standin("chatbotmobile", log_dir, "--token", TOKEN)
        stack.callback(standin.stop)
        standin.start()
        api_port = free_port()
        storage_dir = log_dir / "uploads"
        # A task log of its own: its scheduler releases every task of the database.
        database = stack.enter_context(own_database("chat"))
        repo = TaskLogRepository(session_factory(database))
        env = {
            "DATABASE_URL": database,
            "CHATBOT_URL": standin.url,
            "CHATBOT_API_TOKEN": TOKEN,
            "STORAGE_LOCAL_DIR": str(storage_dir),
            "PUBLIC_API_URL": f"http://127.0.0.1:{api_port}",
            **(worker_env or {}),
        }
        settings = get_settings().model_copy(
            update={
                "chatbot_url": standin.url,
                "chatbot_api_token": SecretStr(TOKEN),
                "storage_local_dir": str(storage_dir),
                "public_api_url": env["PUBLIC_API_URL"],
                "database_url": database,
                **(settings_update or {}),
            }
        )
        api = stack.enter_context(running_api(settings, port=api_port))
        worker = Worker("services.http_worker", "http", log_dir, env=env, include="")
        stack.callback(worker.stop)
        worker.start()
        # Releases tasks held in the log (open breaker, ordering, long backoff).
        upkeep = scheduler(log_dir, {**env, **BENCH_SCHEDULER})
        stack.callback(upkeep.stop)
        upkeep.start()
        yield ChatBench(settings, standin, worker, api, repo, storage_dir)
