"""Fair share: one customer's import against the other customers' single writes.

Customer A imports: bulk upserts with embeddings (the embeddings stand-in answers each call
after `embed_delay_s`) on queue `es`, and a batch of text documents on queue `http`, all
sent as fast as the API takes them. Customers B..E meanwhile each send single writes at a
steady rate, a catalog upsert and an FAQ create in turn. Latency is a write's time from
acceptance to success (`created_at` to `finished_at` in the task log). Rounds, each on the
project's processes (API, es-worker, http-worker, scheduler) and stand-ins:

- fair share on (the bench's FAIR_SHARE_BOUND): B..E alone; A alone; A with B..E;
- fair share off (FAIR_SHARE_BOUND=0, the behaviour before fair share): A alone; A with B..E.

With the import running, only the writes B..E sent while A's import was unfinished count.
A's throughput is its items (documents) per second on each queue, from its first write
accepted to its last finished.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from services.core.db import session_factory
from services.core.tasklog.models import TaskLog
from tools.bench.harness import BenchStack, table

OTHERS = ("cust-b", "cust-c", "cust-d", "cust-e")
IMPORTER = "cust-a"


@dataclass(frozen=True)
class Sizes:
    """How big the rounds are."""

    bulks: int  # A's bulk upserts
    bulk_items: int  # items in each
    documents: int  # A's text documents
    others_rate: float  # writes per second of each other customer
    others_alone_s: float  # how long B..E write with no import running
    embed_delay_s: float  # each embeddings call answers this late
    bound: int  # FAIR_SHARE_BOUND with fair share on
    concurrency: int  # pool processes of each worker


FULL = Sizes(
    bulks=120,
    bulk_items=20,
    documents=1200,
    others_rate=4.0,
    others_alone_s=30,
    embed_delay_s=0.4,
    bound=2,
    concurrency=4,
)
CI = Sizes(
    bulks=6,
    bulk_items=5,
    documents=40,
    others_rate=2.0,
    others_alone_s=4,
    embed_delay_s=0.2,
    bound=2,
    concurrency=4,
)


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))
    return round(ordered[index] * 1000, 1)


class Round:
    """Writes sent to one stack's API, and what the task log says of them."""

    def __init__(self, bench: BenchStack, sizes: Sizes) -> None:
        self.bench = bench
        self.sizes = sizes
        self.url = f"http://127.0.0.1:{bench.env['API_PORT']}"
        self.headers = {"Authorization": f"Bearer {bench.token()}"}
        self.sessions = session_factory(bench.settings.database_url)
        self.serial = 0
        self.lock = threading.Lock()

    def _next(self) -> int:
        with self.lock:
            self.serial += 1
            return self.serial

    def _accepted(self, answer: httpx.Response) -> str:
        if answer.status_code != 202:
            raise RuntimeError(f"write refused: {answer.status_code} {answer.text[:300]}")
        task_id: str = answer.json()["task_id"]
        return task_id

    # -- writes -----------------------------------------------------------------------

    def others(self, stop: threading.Event) -> list[str]:
        """B..E each write at the steady rate until `stop`; their task ids."""

        def customer(name: str, offset: float) -> list[str]:
            ids: list[str] = []
            period = 1 / self.sizes.others_rate
            due = time.monotonic() + offset * period
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as api:
                while not stop.is_set():
                    stop.wait(max(0.0, due - time.monotonic()))
                    if stop.is_set():
                        break
                    due += period
                    n = self._next()
                    if n % 2:
                        body = {"customer_id": name, "data": {"name": f"price {n}", "n": n}}
                        answer = api.put(f"/api/v1/products/p{n % 50}", json=body)
                    else:
                        form = {"customer_id": name, "question": f"q{n}", "answer": f"a{n}"}
                        answer = api.post("/api/v1/mobile-faq", data=form)
                    ids.append(self._accepted(answer))
            return ids

        with ThreadPoolExecutor(len(OTHERS)) as pool:
            lanes = [pool.submit(customer, name, n / len(OTHERS)) for n, name in enumerate(OTHERS)]
            return [task_id for lane in lanes for task_id in lane.result()]

    def import_(self) -> list[str]:
        """A's import: bulk upserts with embeddings and text documents, as fast as accepted."""
        sizes = self.sizes

        def bulks() -> list[str]:
            ids = []
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as api:
                for k in range(sizes.bulks):
                    items = [
                        {"id": f"a{k}-{i}", "data": {"name": f"item {k}-{i}", "description": "x"}}
                        for i in range(sizes.bulk_items)
                    ]
                    body = {"customer_id": IMPORTER, "items": items, "with_embedding": True}
                    ids.append(self._accepted(api.post("/api/v1/products/bulk-upsert", json=body)))
            return ids

        def documents() -> list[str]:
            ids = []
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as api:
                for k in range(sizes.documents):
                    body = {
                        "customer_id": IMPORTER,
                        "title": f"manual {k}",
                        "text": f"chapter {k}: " + "lorem ipsum " * 40,
                        "source": f"import-{k % 20}",
                    }
                    ids.append(self._accepted(api.post("/api/v1/documents/upload-text", json=body)))
            return ids

        with ThreadPoolExecutor(2) as pool:
            lanes = [pool.submit(bulks), pool.submit(documents)]
            return [task_id for lane in lanes for task_id in lane.result()]

    def warm(self) -> None:
        """One write of every kind and customer, finished: the workers are up and no round
        pays for start-up."""
        ids = []
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as api:
            for name in (IMPORTER, *OTHERS):
                body = {
                    "customer_id": name,
                    "data": {"name": "warm", "description": "x"},
                    "with_embedding": name == IMPORTER,
                }
                ids.append(self._accepted(api.put("/api/v1/products/warm", json=body)))
                form = {"customer_id": name, "question": "warm", "answer": "warm"}
                ids.append(self._accepted(api.post("/api/v1/mobile-faq", data=form)))
                text = {"customer_id": name, "title": "warm", "text": "warm"}
                ids.append(self._accepted(api.post("/api/v1/documents/upload-text", json=text)))
        self.wait_finished(ids, timeout_s=120)

    # -- reading the log --------------------------------------------------------------

    def rows(self, task_ids: list[str]) -> list[Any]:
        """(task_id, queue, status, created_at, finished_at) of the tasks."""
        found: list[Any] = []
        with self.sessions() as session:
            for start in range(0, len(task_ids), 1000):
                chunk = task_ids[start : start + 1000]
                found += session.execute(
                    select(
                        TaskLog.task_id,
                        TaskLog.queue,
                        TaskLog.status,
                        TaskLog.created_at,
                        TaskLog.finished_at,
                    ).where(TaskLog.task_id.in_(chunk))
                ).all()
        return found

    def wait_finished(self, task_ids: list[str], timeout_s: float = 1800) -> list[Any]:
        """The rows once every task finished."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.rows(task_ids)
            if len(rows) == len(task_ids) and all(r.finished_at is not None for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(r.finished_at is None for r in rows)} tasks unfinished")
            time.sleep(0.3)

    # -- figures ------------------------------------------------------------------------

    def latencies(
        self, rows: list[Any], since: datetime | None, until: datetime | None
    ) -> dict[str, Any]:
        """p50/p99 (ms) of acceptance to success, in all and per queue, of writes accepted
        in [since, until]."""
        kept = [
            r
            for r in rows
            if (since is None or r.created_at >= since) and (until is None or r.created_at <= until)
        ]
        failed = sum(1 for r in kept if r.status != "success")

        def of(selection: list[Any]) -> dict[str, Any]:
            seconds = [(r.finished_at - r.created_at).total_seconds() for r in selection]
            return {
                "writes": len(seconds),
                "p50_ms": _percentile(seconds, 0.5),
                "p99_ms": _percentile(seconds, 0.99),
                "max_ms": _percentile(seconds, 1.0),
            }

        return {
            **of(kept),
            "failed": failed,
            "es": of([r for r in kept if r.queue == "es"]),
            "http": of([r for r in kept if r.queue == "http"]),
        }

    def throughput(self, rows: list[Any]) -> dict[str, Any]:
        """A's documents per second on each queue, first accepted to last finished."""
        figures: dict[str, Any] = {"failed": sum(1 for r in rows if r.status != "success")}
        per_task = {"es": self.sizes.bulk_items, "http": 1}
        for queue, items in per_task.items():
            mine = [r for r in rows if r.queue == queue]
            span = (
                max(r.finished_at for r in mine) - min(r.created_at for r in mine)
            ).total_seconds()
            figures[queue] = {
                "documents": len(mine) * items,
                "seconds": round(span, 2),
                "per_s": round(len(mine) * items / span, 1),
            }
        return figures


def _others_alone(run: Round, sizes: Sizes) -> dict[str, Any]:
    stop = threading.Event()
    threading.Timer(sizes.others_alone_s, stop.set).start()
    ids = run.others(stop)
    return run.latencies(run.wait_finished(ids), None, None)


def _import_alone(run: Round) -> dict[str, Any]:
    return run.throughput(run.wait_finished(run.import_()))


def _import_with_others(run: Round) -> dict[str, Any]:
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        others = pool.submit(run.others, stop)
        time.sleep(2)  # the others' steady load runs before the import starts
        imported = run.import_()
        mine = run.wait_finished(imported)
        stop.set()
        ids = others.result()
    since = min(r.created_at for r in mine)
    until = max(r.finished_at for r in mine)
    return {
        "import": run.throughput(mine),
        "others": run.latencies(run.wait_finished(ids), since, until),
    }


def _stack(workdir: Path, sizes: Sizes, bound: int, name: str) -> BenchStack:
    bench = BenchStack(
        workdir,
        {
            "es-worker": ("services.es_worker", "es"),
            "http-worker": ("services.http_worker", "http"),
        },
        name,
        concurrency=sizes.concurrency,
        timings={"FAIR_SHARE_BOUND": str(bound)},
    )
    bench.start(
        {
            "redis",
            "es-standin",
            "embeddings-standin",
            "chatbot-standin",
            "api",
            "es-worker",
            "http-worker",
            "scheduler",
        }
    )
    httpx.post(
        f"{bench.control('embeddings')}/faults",
        json={"mode": "slow", "delay_s": sizes.embed_delay_s, "duration_s": 86_400},
    ).raise_for_status()
    return bench


def run_fairness(workdir: Path, sizes: Sizes, log: Any = print) -> dict[str, Any]:
    """Every round; the figures."""
    results: dict[str, Any] = {"sizes": sizes.__dict__, "load_before": os.getloadavg()}
    for fair, bound in (("on", sizes.bound), ("off", 0)):
        bench = _stack(workdir / f"fair-{fair}", sizes, bound, f"fair{fair}")
        try:
            run = Round(bench, sizes)
            run.warm()
            if fair == "on":
                results["others alone"] = _others_alone(run, sizes)
                log(f"fairness: B..E alone {results['others alone']}")
            results[f"A alone, fair share {fair}"] = _import_alone(run)
            log(f"fairness: A alone ({fair}) {results[f'A alone, fair share {fair}']}")
            both = _import_with_others(run)
            results[f"A with B..E, fair share {fair}"] = both
            log(f"fairness: A with B..E ({fair}) {both}")
        finally:
            bench.stop()
    results["load_after"] = os.getloadavg()
    on, alone = results["A with B..E, fair share on"], results["A alone, fair share on"]
    base = results["others alone"]["p99_ms"]
    results["verdict"] = {
        "others_p99_ratio": round(on["others"]["p99_ms"] / base, 2) if base else None,
        "import_throughput_ratio": {
            q: round(on["import"][q]["per_s"] / alone[q]["per_s"], 2) for q in ("es", "http")
        },
    }
    return results


def summary(results: dict[str, Any]) -> str:
    """The fairness table."""
    rows: list[list[Any]] = [
        [
            "round",
            "B..E writes",
            "B..E p50 / p99 ms",
            "p99 es / http ms",
            "A es docs/s",
            "A http docs/s",
        ]
    ]

    def others(figures: dict[str, Any]) -> list[Any]:
        return [
            figures["writes"],
            f"{figures['p50_ms']} / {figures['p99_ms']}",
            f"{figures['es']['p99_ms']} / {figures['http']['p99_ms']}",
        ]

    rows.append(["B..E alone", *others(results["others alone"]), "", ""])
    for fair in ("on", "off"):
        alone = results[f"A alone, fair share {fair}"]
        rows.append(
            [
                f"A alone, fair share {fair}",
                "",
                "",
                "",
                alone["es"]["per_s"],
                alone["http"]["per_s"],
            ]
        )
        both = results[f"A with B..E, fair share {fair}"]
        rows.append(
            [
                f"A with B..E, fair share {fair}",
                *others(both["others"]),
                both["import"]["es"]["per_s"],
                both["import"]["http"]["per_s"],
            ]
        )
    verdict = results["verdict"]
    load = ", ".join(f"{x:.1f}" for x in results["load_before"])
    return (
        table(rows)
        + f"\nB..E p99 with the import / without: {verdict['others_p99_ratio']}"
        + f"\nA's throughput with B..E / alone: {verdict['import_throughput_ratio']}"
        + f"\nload average before: {load}"
    )
