"""Enqueue throughput and latency: the project's API against bare FastAPI and FastAPI + Celery.

Three servers side by side, each a single uvicorn process, driven in turn by wrk at each
concurrency (interleaved, so drift of the machine hits all of them alike):
- `bare`: FastAPI validating the same body, answering 202;
- `bare+celery`: the same plus Celery's `send_task` (the project's Celery settings);
- `project`: the project's API (authentication, idempotency, the task log, the publish).
Then the project's API once more while Elasticsearch is down and the es-worker holds every
task it takes in the log: accepting must not slow down.
Writes: a catalog upsert (JSON) and an FAQ create (a multipart form), each of a customer of
its own (a platform's many tenants, each under its fair-share bound: the path every write
takes as long as its customer has no import running; one customer's thousands of writes
would measure writes kept waiting for their turn instead, which skip the publish).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tools.bench.harness import BenchStack, WrkResult, rss_mib, table, wrk

UPSERT = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"customer_id": "bench-' .. counter
    .. '", "data": {"name": "Desk lamp", "price": 19.9}}'
  return wrk.format("PUT", "/api/v1/products/p" .. (counter % 5000), HEADERS, body)
end
"""
FAQ = """
counter = 0
local function field(b, name, value)
  return "--" .. b .. '\\r\\nContent-Disposition: form-data; name="' .. name .. '"\\r\\n\\r\\n'
    .. value .. "\\r\\n"
end
request = function()
  counter = counter + 1
  local b = "----bench"
  local body = field(b, "customer_id", "bench-" .. counter) .. field(b, "question", "q" .. counter)
    .. field(b, "answer", "an answer") .. "--" .. b .. "--\\r\\n"
  local headers = {}
  for k, v in pairs(HEADERS) do headers[k] = v end
  headers["Content-Type"] = "multipart/form-data; boundary=" .. b
  return wrk.format("POST", "/api/v1/mobile-faq", headers, body)
end
"""
TARGETS = ("bare", "bare+celery", "project")


def _script(workdir: Path, name: str, body: str, token: str | None) -> Path:
    headers = 'HEADERS = {["Content-Type"] = "application/json"'
    if token:
        headers += f', ["Authorization"] = "Bearer {token}"'
    headers += "}\n"
    from tools.bench.harness import WRK_DONE

    path = workdir / f"{name}.lua"
    path.write_text(headers + body + WRK_DONE)
    return path


def run_enqueue(
    workdir: Path, concurrencies: tuple[int, ...], seconds: float, log: Any = print
) -> dict[str, Any]:
    """Every write kind, target and concurrency; the figures."""
    bench = BenchStack(workdir, {"es-worker": ("services.es_worker", "es")}, "enqueue")
    ports = {
        "bare": bench.add_uvicorn("bare", "tools.bench.bare_api:app", {"BARE_SEND": "0"}),
        "bare+celery": bench.add_uvicorn(
            "bare-celery", "tools.bench.bare_api:app", {"BARE_SEND": "1"}
        ),
        "project": int(bench.env["API_PORT"]),
    }
    try:
        bench.start(
            {
                "redis",
                "es-standin",
                "embeddings-standin",
                "chatbot-standin",
                "api",
                "scheduler",
                "bare",
                "bare-celery",
            }
        )
        token = bench.token()
        scripts = {
            (write, target): _script(
                workdir, f"{write}-{target}", body, token if target == "project" else None
            )
            for write, body in (("upsert", UPSERT), ("faq", FAQ))
            for target in TARGETS
        }
        # Each target first serves a short load of each write at the highest concurrency
        # (pools filled, statements prepared, caches warm), so no measured round pays for
        # another's start-up.
        for write in ("upsert", "faq"):
            for target in TARGETS:
                url = f"http://127.0.0.1:{ports[target]}"
                wrk(url, scripts[(write, target)], max(concurrencies), min(seconds, 2))
        results: dict[str, Any] = {"upsert": {}, "faq": {}}
        for write in ("upsert", "faq"):
            for c in concurrencies:
                for target in TARGETS:
                    url = f"http://127.0.0.1:{ports[target]}"
                    got = wrk(url, scripts[(write, target)], c, seconds)
                    results[write].setdefault(target, {})[c] = got.__dict__
                    log(f"enqueue {write} {target:<12} c={c:<3} {got.per_s}/s p99 {got.p99_ms} ms")
        # Elasticsearch down, the es-worker taking and holding what the API queues.
        httpx.post(f"{bench.control('es')}/faults", json={"mode": "down", "duration_s": 3600})
        bench.start({"es-worker"})
        time.sleep(2)
        for c in concurrencies:
            url = f"http://127.0.0.1:{ports['project']}"
            got = wrk(url, scripts[("upsert", "project")], c, seconds)
            results["upsert"].setdefault("project, ES down", {})[c] = got.__dict__
            log(f"enqueue upsert project, ES down c={c:<3} {got.per_s:>8}/s p99 {got.p99_ms} ms")
        results["memory_mib"] = {
            "project": rss_mib(bench.pid("api")),
            "bare+celery": rss_mib(bench.pid("bare-celery")),
            "bare": rss_mib(bench.pid("bare")),
        }
        return results
    finally:
        bench.stop()


def ratios(results: dict[str, Any]) -> list[list[Any]]:
    """Rows: write, concurrency, each target's rate and p99, project vs bare+celery."""
    rows: list[list[Any]] = [
        [
            "write",
            "c",
            *[f"{t} /s" for t in TARGETS],
            "p99 ms (bare+celery, project)",
            "throughput ratio",
            "p99 ratio",
        ]
    ]
    for write in ("upsert", "faq"):
        for c in results[write]["project"]:
            cells = [results[write][t][c] for t in TARGETS]
            base, ours = cells[1], cells[2]
            rows.append(
                [
                    write,
                    c,
                    *[cell["per_s"] for cell in cells],
                    f"{base['p99_ms']} / {ours['p99_ms']}",
                    round(ours["per_s"] / base["per_s"], 2),
                    round(ours["p99_ms"] / base["p99_ms"], 2),
                ]
            )
    return rows


def summary(results: dict[str, Any]) -> str:
    """The enqueue table."""
    return table(ratios(results))


__all__ = ["WrkResult", "run_enqueue", "summary"]
