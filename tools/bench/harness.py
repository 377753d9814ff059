"""What the benchmarks share: a stack of their own, wrk, process memory, drain timing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.core.auth import issue_token
from services.core.config import Settings
from services.core.processes import worker_command
from tools.chaos.stack import (
    KEY_PREFIX,
    Proc,
    Stack,
    create_database,
    drop_database,
    free_port,
    port_open,
)

# Production-like periods (the chaos run's are short on purpose); quiet logs, as a busy
# deployment would run them; no rate limit (it would measure the limit, not the code).
TIMINGS = {
    "LOG_LEVEL": "WARNING",
    "RATE_LIMITS": "",
    "TASK_SOFT_TIME_LIMIT_S": "50",
    "TASK_TIME_LIMIT_S": "60",
    "BROKER_VISIBILITY_TIMEOUT_S": "300",
    "RELEASE_INTERVAL_S": "0.5",
    "BREAKER_OPEN_S": "2",
    "BREAKER_OPEN_MAX_S": "8",
    "RETRY_BACKOFF_BASE_S": "0.5",
    "RETRY_BACKOFF_MAX_S": "5",
    "RECONCILE_INTERVAL_S": "30",
    "RECONCILE_STALE_S": "60",
}


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (a worker and its pool), MiB."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    total = 0
    for each in [pid, *(int(p) for p in found.stdout.split())]:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        total += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")),
            0,
        )
    return round(total / 1024, 1)


@dataclass
class WrkResult:
    """One wrk run."""

    requests: int
    seconds: float
    per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


WRK_DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %d %.1f %.1f %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), errors))
end
"""


def wrk(url: str, script: Path, connections: int, seconds: float) -> WrkResult:
    """Drive `url` with wrk (2 threads, one with a single connection) for `seconds` at
    `connections` connections."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"^RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)$", out, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    requests, micros = int(match[1]), int(match[2])
    return WrkResult(
        requests=requests,
        seconds=round(micros / 1e6, 2),
        per_s=round(requests / (micros / 1e6), 1),
        p50_ms=round(float(match[3]) / 1000, 2),
        p99_ms=round(float(match[4]) / 1000, 2),
        errors=int(match[5]),
    )


def wait_for_log(proc: Proc, text: str, timeout_s: float) -> None:
    """Wait until a process printed `text` (a worker's " ready.")."""
    deadline = time.monotonic() + timeout_s
    while text not in proc.log_path.read_text(errors="replace"):
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited; see {proc.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.name} did not print {text!r}")
        time.sleep(0.1)


def timed(wait: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> float:
    """Seconds until `wait()` is true."""
    started = time.monotonic()
    while not wait():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError("timed out")
        time.sleep(interval_s)
    return time.monotonic() - started


class BenchStack:
    """A stack of the benchmarks' own: Redis, a fresh task log, stand-ins, and processes."""

    def __init__(
        self,
        workdir: Path,
        workers: dict[str, tuple[str, str]],
        name: str,
        *,
        concurrency: int = 2,
        timings: dict[str, str] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.database = f"durable_bench_{name}_{os.getpid()}"
        self.stack = Stack(
            workdir,
            create_database(self.database),
            timings={**TIMINGS, **(timings or {})},
            worker_layout=workers,
            concurrency=concurrency,
        )
        self.stack.build()
        self.env = self.stack.env()
        self.settings = Settings(
            environment="development",
            database_url=self.stack.database_url,
            redis_url=self.env["REDIS_URL"],
            redis_key_prefix=KEY_PREFIX,
            elasticsearch_url=self.stack.es_url,
            es_index_prefix=self.env["ES_INDEX_PREFIX"],
            rate_limits="",
        )

    def token(self) -> str:
        """A service token for the project's API."""
        return issue_token(self.settings, user_id="bench", customer_id=None, roles=["service"])

    def add_uvicorn(self, name: str, target: str, extra_env: dict[str, str]) -> int:
        """Declare a uvicorn process serving `target`; its port."""
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        self.stack.procs[name] = Proc(
            name,
            args,
            {**self.env, **extra_env},
            self.stack.workdir / f"{name}.log",
            ready=lambda: port_open(port),
        )
        self.stack.locks[name] = threading.Lock()
        return port

    def add_worker(self, name: str, app: str, queue: str, concurrency: int = 2) -> Proc:
        """Declare a Celery worker process (not started)."""
        # The baselines' worker runs exactly as the project's workers do (the process table's
        # spelling), only with another app.
        args = worker_command(
            app, queue, python=sys.executable, node=f"{name}@%h", concurrency=concurrency
        )
        proc = Proc(name, args, self.env, self.stack.workdir / f"{name}.log")
        self.stack.procs[name] = proc
        self.stack.locks[name] = threading.Lock()
        return proc

    def start(self, names: set[str]) -> None:
        """Start the named processes (in declaration order)."""
        self.stack.start(only=names)

    def stop(self) -> None:
        """Stop everything and drop the task log."""
        self.stack.stop()
        from services.core.db import dispose_engines

        dispose_engines(self.settings.database_url)
        drop_database(self.database)

    def pid(self, name: str) -> int:
        popen = self.stack.procs[name].popen
        assert popen is not None
        return popen.pid

    def control(self, standin: str) -> str:
        return self.stack.control_url(standin)


def table(rows: list[list[Any]]) -> str:
    """Rows as a left-aligned text table."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    )
