"""Task-log scale: status and my-tasks latency as the log grows, and bytes per row.

The log is filled in steps (`sizes`, rows in all) with rows shaped like real ones (a payload of
a catalog upsert, a finished status, spread over 100 users and customers and 30 days), by
one INSERT ... SELECT per step. After each step the project's API answers, driven by wrk:
- status: `GET /api/v1/tasks/{id}/status` of random tasks (a service token sees every task);
- my tasks: `GET /api/v1/tasks/my-tasks` (first page, 50 rows) of a user owning 1/100 of
  the rows, so that user's history grows with the log.
Both must stay flat as the log grows (their indexes), and bytes per row (table, its TOAST and
its indexes) tells how much disk a year of writes takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from services.core.auth import issue_token
from tools.bench.harness import BenchStack, table, wrk

USERS = 100
ROWS = """
INSERT INTO task_log (
  task_id, task_name, queue, user_id, customer_id, payload, status, result, retry_count,
  attempts, deadline_at, published_at, created_at, updated_at, finished_at, seq, held
)
SELECT
  'scale-' || g, 'es_upsert_product', 'es', 'user-' || u, 'cust-' || u,
  json_build_object('customer_id', 'cust-' || u, 'item_id', 'p' || g,
    'data', json_build_object('name', 'Desk lamp ' || g, 'price', 19.9,
      'description', 'A lamp for a desk, with a flexible arm and a warm light.'),
    'with_embedding', false),
  'success', json_build_object('indexed', 1), 0, 1,
  at + interval '1 day', at, at, at + interval '1 second', at + interval '1 second',
  nextval('task_log_seq'), false
FROM (
  SELECT g, g % CAST(:users AS bigint) AS u,
    now() - (interval '30 days' * (1 - g::float / CAST(:top AS float))) AS at
  FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
) AS rows
"""
STATUS = """
request = function()
  local path = "/api/v1/tasks/scale-" .. math.random(0, ROWS - 1) .. "/status"
  return wrk.format("GET", path, HEADERS)
end
"""
MY_TASKS = """
request = function()
  return wrk.format("GET", "/api/v1/tasks/my-tasks?limit=50", HEADERS)
end
"""


def _script(workdir: Path, name: str, body: str, token: str, rows: int) -> Path:
    from tools.bench.harness import WRK_DONE

    path = workdir / f"{name}.lua"
    path.write_text(
        f'HEADERS = {{["Authorization"] = "Bearer {token}"}}\nROWS = {rows}\n' + body + WRK_DONE
    )
    return path


def run_tasklog_scale(
    workdir: Path, sizes: tuple[int, ...], seconds: float, connections: int = 8, log: Any = print
) -> dict[str, Any]:
    """Fill the log to each size in turn; the latencies and bytes per row at each."""
    bench = BenchStack(workdir, {}, "scale")
    engine = create_engine(bench.settings.database_url)
    results: dict[str, Any] = {}
    try:
        bench.start({"redis", "api"})
        service = bench.token()
        owner = issue_token(bench.settings, user_id="user-7", customer_id="cust-7", roles=["user"])
        done = 0
        for size in sizes:
            with engine.begin() as conn:
                conn.execute(
                    text(ROWS),
                    {"users": USERS, "first": done, "last": size - 1, "top": max(sizes)},
                )
                conn.execute(text("ANALYZE task_log"))
            done = size
            with engine.connect() as conn:
                size_bytes = int(
                    conn.scalar(text("SELECT pg_total_relation_size('task_log')")) or 0
                )
            url = _api_url(bench)
            status = wrk(
                url, _script(workdir, f"status-{size}", STATUS, service, size), connections, seconds
            )
            mine = wrk(
                url, _script(workdir, f"mine-{size}", MY_TASKS, owner, size), connections, seconds
            )
            if status.errors or mine.errors:
                raise RuntimeError(f"the API answered errors at {size} rows: {status} {mine}")
            results[str(size)] = {
                "rows": size,
                "bytes_per_row": round(size_bytes / size),
                "status": status.__dict__,
                "my_tasks": mine.__dict__,
            }
            log(
                f"task log {size} rows: {round(size_bytes / size)} bytes/row, status p99 "
                f"{status.p99_ms} ms, my-tasks p99 {mine.p99_ms} ms"
            )
        return results
    finally:
        engine.dispose()
        bench.stop()


def _api_url(bench: BenchStack) -> str:
    return f"http://127.0.0.1:{bench.env['API_PORT']}"


def summary(results: dict[str, Any]) -> str:
    """The task-log scale table."""
    head = ["rows", "bytes/row", "status /s", "status p50/p99 ms", "my-tasks /s"]
    rows: list[list[Any]] = [[*head, "my-tasks p50/p99 ms"]]
    for r in results.values():
        s, m = r["status"], r["my_tasks"]
        rows.append(
            [
                r["rows"],
                r["bytes_per_row"],
                s["per_s"],
                f"{s['p50_ms']} / {s['p99_ms']}",
                m["per_s"],
                f"{m['p50_ms']} / {m['p99_ms']}",
            ]
        )
    return table(rows)
