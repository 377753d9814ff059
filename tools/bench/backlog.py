"""The outage backlog: writes accepted while a downstream is down, then drained when it returns.

One run, on a stack of its own (a private redis-server with its append-only file, a fresh
PostgreSQL task log, the stand-ins, one worker and the scheduler):

1. pipeline (unless `baseline` is off): `n` writes accepted with the worker stopped, then
   the worker started: the time it takes to drain them is the pipeline's throughput with the
   downstream up;
2. outage: the downstream goes down for good; `n` more writes are accepted while it is down.
   Sampled meanwhile: the worker's resident memory (all its processes), Redis' memory and
   what it holds (queue lists, unacked messages), and how many tasks wait in the log;
3. recovery: the downstream comes back; the time until every write has landed is the drain
   throughput, compared with the pipeline's.

Every write goes to one of a set of entities, so the end state tells whether each entity's
writes took effect in acceptance order; the stand-in's counters tell whether two deliveries
of one write overlapped. `kind` is "catalog" (Elasticsearch upserts) or "faq" (ChatbotMobile
FAQ creates, then updates of the same FAQs, which wait for their create).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis import Redis
from sqlalchemy import func, select, text

from services.core.celery_app import make_celery_app
from services.core.config import Settings
from services.core.db import session_factory
from services.core.enqueue import Enqueuer
from services.core.search import payloads
from services.core.tasklog.models import TaskLog
from services.core.tasklog.repository import TaskLogRepository
from tools.bench.harness import rss_mib
from tools.chaos.stack import (
    CHATBOT_TOKEN,
    INDEX_PREFIX,
    KEY_PREFIX,
    Stack,
    create_database,
    drop_database,
)

TIMINGS = {
    "LONG_WAIT_S": "10",
    "LEASE_MARGIN_S": "5",
    "RELEASE_INTERVAL_S": "0.5",
    "RELEASE_QUEUE_DEPTH": "500",
    "RELEASE_BATCH": "500",
    "RETRY_BACKOFF_BASE_S": "0.5",
    "RETRY_BACKOFF_MAX_S": "5",
    "BREAKER_OPEN_S": "2",
    "BREAKER_OPEN_MAX_S": "8",
    "TASK_SOFT_TIME_LIMIT_S": "15",
    "TASK_TIME_LIMIT_S": "20",
    "BROKER_VISIBILITY_TIMEOUT_S": "60",
    "RECONCILE_INTERVAL_S": "30",
    "RECONCILE_STALE_S": "60",
    "ELASTICSEARCH_REQUEST_TIMEOUT_S": "2",
    "CHATBOT_READ_TIMEOUT_S": "5",
    "RATE_LIMITS": "",
    "LOG_LEVEL": "WARNING",
}
ENTITIES = 500
ACCEPT_THREADS = 4


@dataclass
class Samples:
    """What the outage looked like from outside, sampled every half second."""

    worker_rss_mib: list[float] = field(default_factory=list)
    redis_used_mib: list[float] = field(default_factory=list)
    broker_messages: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)


@dataclass
class BacklogReport:
    """The figures of one run."""

    kind: str
    n: int
    pipeline_s: float
    pipeline_per_s: float
    accept_during_outage_s: float
    drain_s: float
    drain_per_s: float
    drain_ratio: float
    worker_rss_idle_mib: float
    worker_rss_peak_mib: float
    redis_used_idle_mib: float
    redis_used_peak_mib: float
    broker_messages_after_accepting: int
    broker_messages_peak_after_accepting: int
    held_peak: int
    bytes_per_waiting_task: float
    succeeded: int
    failed: int
    attempts: int
    order_violations: int
    overlapping_writes: int
    samples: Samples

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


def _faq(entity: int, round_no: int) -> str:
    """The FAQ a write of `round_no` is about: created in an even round, updated next."""
    return f"f{entity}-{round_no // 2}"


class Run:
    """One backlog run on its own stack."""

    def __init__(self, workdir: Path, kind: str, n: int, *, baseline: bool = True) -> None:
        if kind not in ("catalog", "faq"):
            raise ValueError(f"kind is catalog or faq, not {kind!r}")
        self.kind, self.n, self.baseline = kind, n, baseline
        self.database = f"durable_bench_{os.getpid()}"
        self.stack = Stack(
            workdir,
            create_database(self.database),
            timings=dict(TIMINGS),
            worker_layout={
                "worker": ("services.es_worker", "es")
                if kind == "catalog"
                else ("services.http_worker", "http")
            },
        )
        self.stack.build()
        env = self.stack.env()
        self.settings = Settings(
            environment="development",
            database_url=self.stack.database_url,
            redis_url=env["REDIS_URL"],
            redis_key_prefix=KEY_PREFIX,
            rate_limits="",
        )
        self.repo = TaskLogRepository(session_factory(self.settings.database_url))
        self.enqueuer = Enqueuer(
            repo=self.repo, celery=make_celery_app(self.settings), settings=self.settings
        )
        self.redis = Redis.from_url(self.settings.redis_url)
        self.standin = "es" if kind == "catalog" else "chatbot"
        self.customer = f"bench-{kind}"
        self.serial = 0
        self.lock = threading.Lock()

    # -- writes ---------------------------------------------------------------------------

    def _write(self, entity: int, n: int) -> str:
        """Write number `n`, to entity `entity` (n % ENTITIES)."""
        if self.kind == "catalog":
            payload = payloads.upsert(
                self.customer, f"e{entity}", {"n": n}, with_embedding=False, version=None
            )
            return self.enqueuer.enqueue(
                "es_upsert_service", payload, customer_id=self.customer
            ).task_id
        # Rounds of ENTITIES writes: an even round creates one FAQ per entity, the next one
        # updates it; the update waits in the log for its create (per-entity ordering).
        round_no = n // ENTITIES
        task = "faq_create" if round_no % 2 == 0 else "faq_update"
        payload = {
            "customer_id": self.customer,
            "faq_id": _faq(entity, round_no),
            "question": f"question {n}",
            "answer": f"answer {n}",
        }
        return self.enqueuer.enqueue(task, payload, customer_id=self.customer).task_id

    def accept(self, start: int) -> list[str]:
        """Accept `n` writes numbered from `start`; each entity's writes come from one
        thread, one after the other, so their acceptance order is their numbering."""

        def lane(lane_no: int) -> list[str]:
            ids = []
            for n in range(start, start + self.n):
                if (n % ENTITIES) % ACCEPT_THREADS == lane_no:
                    ids.append(self._write(n % ENTITIES, n))
            return ids

        with ThreadPoolExecutor(ACCEPT_THREADS) as pool:
            lanes = list(pool.map(lane, range(ACCEPT_THREADS)))
        return [task_id for ids in lanes for task_id in ids]

    # -- observing --------------------------------------------------------------------

    def unfinished(self) -> int:
        """Tasks of the run not yet finished."""
        with self.repo.sessions() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(TaskLog)
                    .where(
                        TaskLog.customer_id == self.customer,
                        TaskLog.status.not_in(["success", "failed"]),
                    )
                )
                or 0
            )

    def held(self) -> int:
        """Tasks waiting in the log."""
        with self.repo.sessions() as session:
            return int(
                session.scalar(select(func.count()).select_from(TaskLog).where(TaskLog.held)) or 0
            )

    def broker_messages(self) -> int:
        """Messages Redis holds for the run's queues: ready lists and unacked."""
        keys = [k for k in self.redis.scan_iter(f"{KEY_PREFIX}*") if not k.endswith(b"_index")]
        total = 0
        for key in keys:
            kind = self.redis.type(key)
            if kind == b"list":
                total += int(self.redis.llen(key))  # type: ignore[arg-type]
            elif key.endswith(b"unacked"):
                total += int(self.redis.hlen(key))  # type: ignore[arg-type]
        return total

    def table_bytes(self) -> int:
        """The task log's size on disk, indexes and TOAST included."""
        with self.repo.sessions() as session:
            return int(session.scalar(text("SELECT pg_total_relation_size('task_log')")) or 0)

    def worker_pid(self) -> int:
        proc = self.stack.procs["worker"].popen
        assert proc is not None
        return proc.pid

    def redis_mib(self) -> float:
        info: dict[str, Any] = self.redis.info("memory")  # type: ignore[assignment]
        return int(info["used_memory"]) / 2**20

    def wait_settled(self, timeout_s: float) -> float:
        """Seconds until no task of the run is unfinished."""
        started = time.monotonic()
        while self.unfinished():
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{self.unfinished()} tasks still unfinished")
            time.sleep(0.2)
        return time.monotonic() - started

    def fault(self, mode: str | None) -> None:
        control = self.stack.control_url(self.standin)
        if mode is None:
            httpx.delete(f"{control}/faults").raise_for_status()
        else:
            httpx.post(
                f"{control}/faults", json={"mode": mode, "duration_s": 86_400}
            ).raise_for_status()

    # -- checking -----------------------------------------------------------------------

    def order_violations(self) -> int:
        """Entities whose final state is not their last accepted write."""
        last: dict[str, int] = {}
        for n in range(0 if self.baseline else self.n, 2 * self.n):
            if self.kind == "catalog":
                last[f"e{n % ENTITIES}"] = n
            else:
                last[_faq(n % ENTITIES, n // ENTITIES)] = n
        if self.kind == "catalog":
            # Search sees the last refresh, as on a real cluster.
            httpx.post(f"{self.stack.es_url}/{INDEX_PREFIX}services/_refresh").raise_for_status()
            answer = httpx.post(
                f"{self.stack.es_url}/{INDEX_PREFIX}services/_search",
                json={"query": {"term": {"customer_id": self.customer}}, "size": 10_000},
            )
            answer.raise_for_status()
            stored = {
                h["_source"]["item_id"]: h["_source"]["n"] for h in answer.json()["hits"]["hits"]
            }
            return sum(1 for k, v in last.items() if stored.get(k) != v)
        answer = httpx.get(
            f"{self.stack.chatbot_url}/v1/faqs",
            params={"customer_id": self.customer, "page_size": 500, "page": 1},
            headers={"Authorization": f"Bearer {CHATBOT_TOKEN}"},
        )
        answer.raise_for_status()
        stored_faqs: dict[str, str] = {}
        page = 1
        while True:
            body = answer.json()
            stored_faqs.update({f["faq_id"]: f["answer"] for f in body["items"]})
            if len(stored_faqs) >= body["total"] or not body["items"]:
                break
            page += 1
            answer = httpx.get(
                f"{self.stack.chatbot_url}/v1/faqs",
                params={"customer_id": self.customer, "page_size": 500, "page": page},
                headers={"Authorization": f"Bearer {CHATBOT_TOKEN}"},
            )
        return sum(1 for k, v in last.items() if stored_faqs.get(k) != f"answer {v}")

    def outcomes(self) -> tuple[int, int, int]:
        """(succeeded, failed, attempts) over every task of the run."""
        with self.repo.sessions() as session:
            rows = session.execute(
                select(TaskLog.status, func.count(), func.sum(TaskLog.attempts))
                .where(TaskLog.customer_id == self.customer)
                .group_by(TaskLog.status)
            ).all()
        by = {status: (int(count), int(attempts or 0)) for status, count, attempts in rows}
        return (
            by.get("success", (0, 0))[0],
            by.get("failed", (0, 0))[0],
            sum(a for _, a in by.values()),
        )

    # -- the run ------------------------------------------------------------------------

    def run(self, log: Callable[[str], None] = print) -> BacklogReport:
        """All three phases; the report."""
        infra = {"redis", "es-standin", "embeddings-standin", "chatbot-standin", "scheduler"}
        self.stack.start(only=infra)
        try:
            return self._phases(log)
        finally:
            self.stack.stop()
            self.enqueuer_close()

    def enqueuer_close(self) -> None:
        self.redis.close()
        from services.core.db import dispose_engines

        dispose_engines(self.settings.database_url)
        drop_database(self.database)

    def _phases(self, log: Callable[[str], None]) -> BacklogReport:
        pipeline_s = 0.0
        if self.baseline:
            log(f"backlog/{self.kind}: accepting {self.n} writes with the worker stopped")
            self.accept(0)
        self.stack.procs["worker"].start()
        if self.baseline:
            pipeline_s = self.wait_settled(3600)
            log(f"backlog/{self.kind}: pipeline drained {self.n} in {pipeline_s:.1f} s")
        time.sleep(2)
        rss_idle, redis_idle = rss_mib(self.worker_pid()), self.redis_mib()
        size_before = self.table_bytes()

        samples = Samples()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.worker_rss_mib.append(round(rss_mib(self.worker_pid()), 1))
                samples.redis_used_mib.append(round(self.redis_mib(), 2))
                samples.broker_messages.append(self.broker_messages())
                samples.held.append(self.held())
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        self.fault("down")
        sampler.start()
        started = time.monotonic()
        self.accept(self.n)
        accept_s = time.monotonic() - started
        log(f"backlog/{self.kind}: accepted {self.n} during the outage in {accept_s:.1f} s")
        # The worker turns every message it takes into a wait in the log; then the outage
        # goes on for longer than the breaker's longest open period.
        after_accept = len(samples.broker_messages)
        deadline = time.monotonic() + 600
        while self.broker_messages() > 50 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2 * float(TIMINGS["BREAKER_OPEN_MAX_S"]))
        stop.set()
        sampler.join()
        size_after = self.table_bytes()
        held_peak = max(samples.held, default=0)
        messages_after = self.broker_messages()
        log(f"backlog/{self.kind}: {held_peak} tasks waiting in the log, {messages_after} in Redis")

        self.fault(None)
        drain_s = self.wait_settled(3600)
        log(f"backlog/{self.kind}: drained {self.n} in {drain_s:.1f} s")
        succeeded, failed, attempts = self.outcomes()
        overlaps = int(
            httpx.get(f"{self.stack.control_url(self.standin)}/stats").json()["overlapping_writes"]
        )
        drain_rate = self.n / drain_s
        pipeline_rate = self.n / pipeline_s if self.baseline else 0.0
        return BacklogReport(
            kind=self.kind,
            n=self.n,
            pipeline_s=round(pipeline_s, 2),
            pipeline_per_s=round(pipeline_rate, 1),
            accept_during_outage_s=round(accept_s, 2),
            drain_s=round(drain_s, 2),
            drain_per_s=round(drain_rate, 1),
            drain_ratio=round(drain_rate / pipeline_rate, 3) if self.baseline else 0.0,
            worker_rss_idle_mib=round(rss_idle, 1),
            worker_rss_peak_mib=max(samples.worker_rss_mib, default=0.0),
            redis_used_idle_mib=round(redis_idle, 2),
            redis_used_peak_mib=max(samples.redis_used_mib, default=0.0),
            broker_messages_after_accepting=messages_after,
            broker_messages_peak_after_accepting=max(
                samples.broker_messages[after_accept:], default=messages_after
            ),
            held_peak=held_peak,
            bytes_per_waiting_task=round((size_after - size_before) / self.n, 1),
            succeeded=succeeded,
            failed=failed,
            attempts=attempts,
            order_violations=self.order_violations(),
            overlapping_writes=overlaps,
            samples=samples,
        )


def run_backlog(
    workdir: Path,
    kind: str,
    n: int,
    log: Callable[[str], None] = print,
    *,
    baseline: bool = True,
) -> BacklogReport:
    """One backlog run of `kind` with `n` writes per phase (without the pipeline phase
    unless `baseline`: its only use is the drain ratio)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return Run(workdir, kind, n, baseline=baseline).run(log)
