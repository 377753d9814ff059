"""A catalog test bench: ES and embeddings stand-ins (or a real ES), an es-worker, the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from elasticsearch import Elasticsearch, NotFoundError
from pydantic import SecretStr

from services.core.config import Settings, get_settings
from services.core.db import session_factory
from services.core.tasklog.models import TaskLog
from services.core.tasklog.repository import TaskLogRepository
from tests.support.databases import own_database
from tests.support.flow import wait_finished
from tests.support.procs import BENCH_SCHEDULER, Worker, scheduler
from tests.support.server import running_api
from tests.support.standins import Standin

EMBEDDINGS_KEY = "sk-bench-default-0123456789"


@dataclass
class Bench:
    """Everything a catalog test talks to."""

    settings: Settings
    es: Elasticsearch
    es_standin: Standin | None
    embeddings: Standin
    worker: Worker
    api: httpx.Client
    repo: TaskLogRepository

    def index(self, plural: str) -> str:
        """The run's index of a kind."""
        return f"{self.settings.es_index_prefix}{plural}"

    def doc(self, plural: str, customer: str, item: str) -> dict[str, Any] | None:
        """The stored source of an item, or None."""
        try:
            found = self.es.get(index=self.index(plural), id=f"{customer}:{item}", routing=customer)
        except NotFoundError:
            return None
        source: dict[str, Any] = found["_source"]
        return source

    def items(self, plural: str, customer: str) -> dict[str, dict[str, Any]]:
        """All stored items of a customer, by item id."""
        self.es.indices.refresh(index=self.index(plural))
        hits = self.es.search(
            index=self.index(plural), query={"term": {"customer_id": customer}}, size=10_000
        )["hits"]["hits"]
        return {h["_source"]["item_id"]: h["_source"] for h in hits}

    def finished(self, task_id: str, timeout_s: float = 30) -> TaskLog:
        """The task's row once finished."""
        return wait_finished(self.repo, task_id, timeout_s)

    def succeeded(self, task_id: str, timeout_s: float = 30) -> dict[str, Any]:
        """The result of a task that must succeed."""
        row = self.finished(task_id, timeout_s)
        assert row.status == "success", (row.status, row.error_message)
        assert isinstance(row.result, dict)
        return row.result


def new_customer() -> str:
    """A customer id no other test uses."""
    return f"cust-{uuid.uuid4().hex[:10]}"


@contextmanager
def catalog_bench(
    log_dir: Path,
    *,
    real_es_url: str | None = None,
    worker_env: dict[str, str] | None = None,
    gc_deletes_s: float = 1.0,
    redis_key_prefix: str | None = None,
    database_url: str | None = None,
    api_settings: Mapping[str, object] | None = None,
    scheduler_env: dict[str, str] | None = None,
) -> Iterator[Bench]:
    """Start the bench; a real cluster when `real_es_url` is given, else the stand-in.

    The bench has a task log of its own (`database_url`, else a fresh database): its
    scheduler releases and reconciles every task of its task log. `redis_key_prefix` gives
    it queues of its own, for several benches at once; `api_settings` are settings of the
    bench's API alone; `scheduler_env` overrides its scheduler's (whose reconciler is off by
    default).
    """
    with ExitStack() as stack:
        es_standin = None
        if real_es_url is None:
            # Writes become searchable only at an explicit refresh: the worst case of a real
            # cluster (1 s later at best), so code that forgets a refresh fails here.
            es_standin = Standin(
                "elasticsearch",
                log_dir,
                "--gc-deletes-s",
                str(gc_deletes_s),
                "--refresh-interval",
                "-1",
            )
            stack.callback(es_standin.stop)
            es_standin.start()
        embeddings = Standin("embeddings", log_dir)
        stack.callback(embeddings.stop)
        embeddings.start()
        url = real_es_url or (es_standin.url if es_standin else "")
        env = {
            "ELASTICSEARCH_URL": url,
            "ES_INDEX_PREFIX": f"{get_settings().redis_key_prefix.rstrip(':').lower()}-",
            "EMBEDDINGS_PROVIDER": "openai",
            "EMBEDDINGS_BASE_URL": f"{embeddings.url}/v1",
            "EMBEDDINGS_DIMENSIONS": "8",
            "EMBEDDINGS_API_KEY": EMBEDDINGS_KEY,
            **(worker_env or {}),
        }
        prefix = redis_key_prefix or get_settings().redis_key_prefix
        env["REDIS_KEY_PREFIX"] = prefix
        database = database_url or stack.enter_context(own_database("catalog"))
        env["DATABASE_URL"] = database
        repo = TaskLogRepository(session_factory(database))
        # The same downstream settings for the API and the facade in this process.
        settings = get_settings().model_copy(
            update={
                "elasticsearch_url": url,
                "es_index_prefix": env["ES_INDEX_PREFIX"],
                "embeddings_provider": "openai",
                "embeddings_base_url": env["EMBEDDINGS_BASE_URL"],
                "embeddings_dimensions": 8,
                "embeddings_api_key": SecretStr(EMBEDDINGS_KEY),
                "redis_key_prefix": prefix,
                "database_url": database,
            }
        )
        worker = Worker("services.es_worker", "es", log_dir, env=env, include="")
        stack.callback(worker.stop)
        worker.start()
        # Releases tasks held in the log (open breaker, long backoff).
        upkeep = scheduler(log_dir, {**env, **BENCH_SCHEDULER, **(scheduler_env or {})})
        stack.callback(upkeep.stop)
        upkeep.start()
        api = stack.enter_context(running_api(settings.model_copy(update=dict(api_settings or {}))))
        es = Elasticsearch(url, request_timeout=10)
        stack.callback(es.close)
        yield Bench(settings, es, es_standin, embeddings, worker, api, repo)
