"""The whole stack a model-based test drives: stand-ins, workers, the scheduler and the API.

Each stack gets a task log and a Redis prefix of its own (a scheduler releases and
reconciles every task of its log), and slow embeddings throughout, so that an upsert with an
embedding is still in flight when the writes accepted after it run.
"""

from __future__ import annotations

from collections import Counter
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
from tests.support.flow import all_finished
from tests.support.model import CatalogModel, DocumentModel, FaqModel
from tests.support.procs import Worker, scheduler, wait_until
from tests.support.server import running_api
from tests.support.standins import Standin

CHATBOT_TOKEN = "model-chatbot-token"
# Short periods, so that an example settles within seconds of its last fault.
SHORT_PERIODS = {
    "BROKER_VISIBILITY_TIMEOUT_S": "12",
    "TASK_SOFT_TIME_LIMIT_S": "5",
    "TASK_TIME_LIMIT_S": "6",
    "LONG_WAIT_S": "2",
    "LEASE_MARGIN_S": "2",
    "RELEASE_INTERVAL_S": "0.3",
    "ELASTICSEARCH_REQUEST_TIMEOUT_S": "2",
    "CHATBOT_READ_TIMEOUT_S": "2",
    "EMBEDDINGS_TIMEOUT_S": "4",
}


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

    def overlapped(self) -> list[str]:
        """The latest writes whose deliveries overlapped (Elasticsearch: document and version;
        ChatbotMobile: Idempotency-Key, a task id)."""
        return [w for s in (self.es, self.chatbot) for w in s.stats()["overlapped_writes"]]

    def settled(self, task_ids: list[str], timeout_s: float, who: str) -> list[TaskLog]:
        """Faults cleared, the rows of the tasks once every one finished ([] for none)."""
        for standin in (self.es, self.chatbot):
            standin.clear_fault()
        if not task_ids:
            return []
        rows: list[TaskLog] = wait_until(
            lambda: all_finished(self.repo, task_ids),
            timeout_s,
            interval_s=0.3,
            what=f"the {len(task_ids)} tasks of {who} to finish",
        )
        return rows

    def fail(self, downstream: str, mode: str, seconds: float, *, slow_s: float) -> None:
        """Make Elasticsearch ("es") or ChatbotMobile ("chatbot") fail for `seconds`: answer
        503 ("error"), apply writes and answer after the client gave up ("timeout"), or
        answer `slow_s` late but in time ("slow")."""
        standin = self.es if downstream == "es" else self.chatbot
        if mode == "error":
            standin.fault("error", seconds, status=503)
        elif mode == "timeout":
            standin.fault("timeout", seconds, delay_s=2.5)
        else:
            standin.fault("slow", seconds, delay_s=slow_s)

    def assert_holds(
        self, customer: str, catalog: CatalogModel, faqs: FaqModel, documents: DocumentModel
    ) -> None:
        """What the downstreams hold of `customer` is what the models say."""
        stored = {i: doc["n"] for i, doc in self.es_items(customer).items()}
        assert stored == {i: data["n"] for i, data in catalog.items.items()}
        held_faqs = self.upstream("/v1/faqs", customer)
        assert {f["faq_id"]: f["answer"] for f in held_faqs} == faqs.answers
        held = Counter((d["source"], d["title"]) for d in self.upstream("/v1/documents", customer))
        assert held == documents.documents


@contextmanager
def model_stack(
    log_dir: Path,
    name: str,
    timings: dict[str, str],
    *,
    embeddings_delay_s: float,
    settings_update: dict[str, Any] | None = None,
    skewed_workers_s: float = 0.0,
) -> Iterator[ModelStack]:
    """Start the stack with `timings` in every process's environment; stop it on exit.

    With `skewed_workers_s`, an es-worker whose clock runs that far ahead ("es-ahead") and an
    http-worker whose clock runs that far behind ("http-behind") run beside the others.
    """
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
        if skewed_workers_s:
            workers["es-ahead"] = Worker(
                "services.es_worker", "es", log_dir, env=env, include="", concurrency=1,
                clock_skew_s=skewed_workers_s,
            )  # fmt: skip
            workers["http-behind"] = Worker(
                "services.http_worker", "http", log_dir, env=env, include="", concurrency=1,
                clock_skew_s=-skewed_workers_s,
            )  # fmt: skip
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
