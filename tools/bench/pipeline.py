"""Pipeline throughput: tracked tasks against bare Celery tasks doing the same, same pool.

Each round puts `n` messages in a queue with its worker stopped, starts the worker, and times
the span from the first task finished to the last (so worker start-up does not count):
- tracked no-op (the es canary) against a bare no-op;
- tracked Elasticsearch upserts against bare tasks making the same Elasticsearch call;
- single upserts against bulk upserts of 500 items (documents per second).
Worker memory is read after each worker drained its queue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy import func, select

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.db import session_factory
from services.core.enqueue import Enqueuer
from services.core.search import payloads
from services.core.tasklog.models import TaskLog
from services.core.tasklog.repository import TaskLogRepository
from tools.bench import bare_worker
from tools.bench.harness import BenchStack, rss_mib, table

THREADS = 4
BULK_ITEMS = 500


def _enqueuer(settings: Settings) -> Enqueuer:
    repo = TaskLogRepository(session_factory(settings.database_url))
    return Enqueuer(repo=repo, celery=make_celery_app(settings), settings=settings)


def _accept(settings: Settings, items: Sequence[tuple[str, dict[str, Any], str | None]]) -> None:
    enqueuer = _enqueuer(settings)
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda item: enqueuer.enqueue(item[0], item[1], customer_id=item[2]), items))


def accept_upserts(settings: Settings, n: int, customers: int = 1000) -> None:
    """`n` tracked upserts of services (no rate limit applies to them), one item each, spread
    over `customers` customers (each under its fair-share bound: the pipeline, not one
    customer's import, which tools/bench/fairness.py measures)."""
    _accept(
        settings,
        [
            (
                "es_upsert_service",
                payloads.upsert(
                    f"bench-{i % customers}",
                    f"s{i}",
                    {"name": f"s{i}"},
                    with_embedding=False,
                    version=None,
                ),
                f"bench-{i % customers}",
            )
            for i in range(n)
        ],
    )


def accept_canaries(settings: Settings, n: int) -> None:
    """`n` tracked no-op tasks (the es canary)."""
    _accept(settings, [("canary_es", {}, None)] * n)


def _span(settings: Settings, name: str) -> tuple[int, float]:
    """(finished tasks of `name`, seconds from the first finished to the last)."""
    with TaskLogRepository(session_factory(settings.database_url)).sessions() as session:
        count, first, last = session.execute(
            select(
                func.count(), func.min(TaskLog.finished_at), func.max(TaskLog.finished_at)
            ).where(TaskLog.task_name == name, TaskLog.status == "success")
        ).one()
    if not count or first is None or last is None:
        return 0, 0.0
    return int(count), (last - first).total_seconds()


def _rate(count: int, span: float) -> float | None:
    # From the first finished to the last: count - 1 tasks in `span` (worker start-up and
    # the first task's own time do not count).
    return round((count - 1) / span, 1) if count > 1 and span > 0 else None


def _drain(proc_pid: int, done: Any) -> float:
    """Wait until `done()`, sampling the worker's memory; its peak, MiB."""
    peak = 0.0
    deadline = time.monotonic() + 3600
    while not done() and time.monotonic() < deadline:
        peak = max(peak, rss_mib(proc_pid))
        time.sleep(0.2)
    return max(peak, rss_mib(proc_pid))


def _tracked_round(bench: BenchStack, name: str, n: int, accept: Any) -> dict[str, Any]:
    accept()
    bench.start({"es-worker"})
    memory = _drain(bench.pid("es-worker"), lambda: _span(bench.settings, name)[0] >= n)
    count, span = _span(bench.settings, name)
    bench.stack.procs["es-worker"].stop()
    return {
        "tasks": count,
        "seconds": round(span, 2),
        "per_s": _rate(count, span),
        "worker_rss_mib": memory,
    }


def _bare_round(bench: BenchStack, task: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    redis = Redis.from_url(bench.settings.redis_url, decode_responses=True)
    prefix = bench.settings.redis_key_prefix

    def number(key: str) -> float:
        value: str | None = redis.get(f"{prefix}{key}")  # type: ignore[assignment]
        return float(value or 0)

    redis.delete(
        *(
            f"{prefix}{k}"
            for k in (bare_worker.DONE_KEY, bare_worker.FIRST_KEY, bare_worker.LAST_KEY)
        )
    )
    app = bare_worker.bare_celery(bench.settings)
    with app.producer_or_acquire() as producer:
        for payload in items:
            app.send_task(
                task, kwargs={"payload": payload}, queue=bare_worker.QUEUE, producer=producer
            )
    bench.start({"bare-worker"})
    memory = _drain(bench.pid("bare-worker"), lambda: number(bare_worker.DONE_KEY) >= len(items))
    count = int(number(bare_worker.DONE_KEY))
    span = number(bare_worker.LAST_KEY) - number(bare_worker.FIRST_KEY)
    bench.stack.procs["bare-worker"].stop()
    redis.close()
    return {
        "tasks": count,
        "seconds": round(span, 2),
        "per_s": _rate(count, span),
        "worker_rss_mib": memory,
    }


def run_pipeline(workdir: Path, n: int, log: Any = print) -> dict[str, Any]:
    """Every round; the figures."""
    bench = BenchStack(workdir, {"es-worker": ("services.es_worker", "es")}, "pipeline")
    bench.add_worker("bare-worker", "tools.bench.bare_worker", bare_worker.QUEUE)
    index = f"{bench.env['ES_INDEX_PREFIX']}services"
    results: dict[str, Any] = {}
    try:
        bench.start({"redis", "es-standin", "embeddings-standin", "chatbot-standin"})
        settings = bench.settings
        results["tracked no-op"] = _tracked_round(
            bench, "canary_es", n, lambda: accept_canaries(settings, n)
        )
        log(f"pipeline tracked no-op: {results['tracked no-op']}")
        results["bare no-op"] = _bare_round(bench, "bare_noop", [{}] * n)
        log(f"pipeline bare no-op: {results['bare no-op']}")
        results["tracked upsert"] = _tracked_round(
            bench, "es_upsert_service", n, lambda: accept_upserts(settings, n)
        )
        log(f"pipeline tracked upsert: {results['tracked upsert']}")
        documents = [
            {"index": index, "id": f"bare:b{i}", "routing": "bare", "version": 2**62 + i,
             "document": {"name": f"b{i}", "customer_id": "bare", "item_id": f"b{i}"}}
            for i in range(n)
        ]  # fmt: skip
        results["bare upsert"] = _bare_round(bench, "bare_es_index", documents)
        log(f"pipeline bare upsert: {results['bare upsert']}")
        batches = max(2, n // BULK_ITEMS)

        def accept_bulk() -> None:
            items = [
                (
                    "es_bulk_upsert_services",
                    payloads.bulk_upsert(
                        "bulk",
                        [{"id": f"b{k}-{i}", "data": {"name": "x"}} for i in range(BULK_ITEMS)],
                        with_embedding=False,
                    ),
                    "bulk",
                )
                for k in range(batches)
            ]
            _accept(settings, items)

        bulk = _tracked_round(bench, "es_bulk_upsert_services", batches, accept_bulk)
        bulk["documents_per_s"] = (
            round((batches - 1) * BULK_ITEMS / bulk["seconds"], 1) if bulk["seconds"] else None
        )
        results["bulk upsert"] = bulk
        log(f"pipeline bulk upsert: {bulk}")
        return results
    finally:
        bench.stop()


def summary(results: dict[str, Any]) -> str:
    """The pipeline table."""
    rows: list[list[Any]] = [["round", "tasks/s", "worker RSS MiB", "tracked / bare"]]
    for tracked, bare in (("tracked no-op", "bare no-op"), ("tracked upsert", "bare upsert")):
        t, b = results[tracked], results[bare]
        ratio = round(t["per_s"] / b["per_s"], 2) if t["per_s"] and b["per_s"] else ""
        rows.append([tracked, t["per_s"], t["worker_rss_mib"], ratio])
        rows.append([bare, b["per_s"], b["worker_rss_mib"], ""])
    bulk = results["bulk upsert"]
    rows.append(["bulk upsert (documents/s)", bulk["documents_per_s"], bulk["worker_rss_mib"], ""])
    rows.append(["single upsert (documents/s)", results["tracked upsert"]["per_s"], "", ""])
    return table(rows)
