"""The whole stack a model-based test drives: stand-ins, workers, the scheduler and the API.

Each stack gets a task log and a Redis prefix of its own (a scheduler releases and
reconciles every task of its log), and slow embeddings throughout, so that an upsert with an
embedding is still in flight when the writes accepted after it run.
"""

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
from services.core.tasklog.repository import TaskLogRepository
from tests.support.databases import own_database
from tests.support.procs import Worker, scheduler
from tests.support.server import running_api
from tests.support.standins import Standin

CHATBOT_TOKEN = "model-chatbot-token"


@dataclass
class ModelStack:
    """The stack the machine drives."""

    settings: Settings
    api: httpx.Client
    repo: TaskLogRepository
    es: Standin
    embeddings: Standin
    chatbot: Standin
    workers: dict[str, Worker]

    def es_items(self, customer: str) -> dict[str, Any]:
        """Stored catalog items of a customer, by item id."""
        index = f"{self.settings.es_index_prefix}products"
        # Search sees the last refresh, as on a real cluster.
        httpx.post(f"{self.es.url}/{index}/_refresh").raise_for_status()
        answer = httpx.post(
            f"{self.es.url}/{index}/_search",
            json={"query": {"term": {"customer_id": customer}}, "size": 1000},
        )
        answer.raise_for_status()
        return {h["_source"]["item_id"]: h["_source"] for h in answer.json()["hits"]["hits"]}

    def upstream(self, path: str, customer: str) -> list[dict[str, Any]]:
        """Items of a ChatbotMobile list, read straight from the stand-in."""
        answer = httpx.get(
            f"{self.chatbot.url}{path}",
            params={"customer_id": customer, "page_size": 500},
            headers={"Authorization": f"Bearer {CHATBOT_TOKEN}"},
        )
        answer.raise_for_status()
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    def overlaps(self) -> int:
        """Deliveries of one write that overlapped at a downstream, so far."""
        return sum(s.stats()["overlapping_writes"] for s in (self.es, self.chatbot))


@contextmanager
def model_stack(
    log_dir: Path,
    name: str,
    timings: dict[str, str],
    *,
    embeddings_delay_s: float,
    settings_update: dict[str, Any] | None = None,
) -> Iterator[ModelStack]:
    """Start the stack with `timings` in every process's environment; stop it on exit."""
    base = get_settings()
    with ExitStack() as stop:
        es = Standin("elasticsearch", log_dir, "--gc-deletes-s", "1")
        embeddings = Standin("embeddings", log_dir)
        chatbot = Standin("chatbotmobile", log_dir, "--token", CHATBOT_TOKEN)
        for standin in (es, embeddings, chatbot):
            stop.callback(standin.stop)
            standin.start()
        embeddings.fault("slow", 24 * 3600, delay_s=embeddings_delay_s)
        prefix = f"{base.redis_key_prefix}{name}:"
        database = stop.enter_context(own_database(name))
        env = {
            **timings,
            "DATABASE_URL": database,
            "REDIS_KEY_PREFIX": prefix,
            "ELASTICSEARCH_URL": es.url,
            "ES_INDEX_PREFIX": f"{prefix.replace(':', '-').lower()}",
            "EMBEDDINGS_PROVIDER": "openai",
            "EMBEDDINGS_BASE_URL": f"{embeddings.url}/v1",
            "EMBEDDINGS_DIMENSIONS": "8",
            "EMBEDDINGS_API_KEY": "model-embeddings-key",
            "CHATBOT_URL": chatbot.url,
            "CHATBOT_API_TOKEN": CHATBOT_TOKEN,
            "STORAGE_LOCAL_DIR": str(log_dir / "uploads"),
        }
        workers = {
            "es": Worker("services.es_worker", "es", log_dir, env=env, include=""),
            "http": Worker("services.http_worker", "http", log_dir, env=env, include=""),
            "scheduler": scheduler(log_dir, env),
        }
        for worker in workers.values():
            stop.callback(worker.stop)
            worker.launch()
        for worker in workers.values():
            worker.wait_ready()
        settings = base.model_copy(
            update={
                "database_url": database,
                "redis_key_prefix": prefix,
                "es_index_prefix": env["ES_INDEX_PREFIX"],
                "chatbot_url": chatbot.url,
                "chatbot_api_token": SecretStr(CHATBOT_TOKEN),
                "storage_local_dir": env["STORAGE_LOCAL_DIR"],
                **(settings_update or {}),
            }
        )
        api = stop.enter_context(running_api(settings))
        repo = TaskLogRepository(session_factory(settings.database_url))
        yield ModelStack(settings, api, repo, es, embeddings, chatbot, workers)
