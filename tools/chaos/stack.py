"""The processes of one chaos run, each startable, killable and restartable by name."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.core import processes
from tools.devstack import ROOT, _die_with_parent
from tools.localservices import (
    create_database,
    drop_database,
    free_port,
    port_open,
    wait_until,
)

__all__ = [
    "ROOT",
    "Proc",
    "Stack",
    "create_database",
    "drop_database",
    "free_port",
    "port_open",
    "wait_until",
]

CHATBOT_TOKEN = "chaos-chatbot-token"
# Worker processes: name -> (Celery app, queue).
WORKERS = {
    "es-worker-1": ("services.es_worker", "es"),
    "es-worker-2": ("services.es_worker", "es"),
    "http-worker": ("services.http_worker", "http"),
}
EMBEDDINGS_KEY = "chaos-embeddings-key"
KEY_PREFIX = "chaos:"
INDEX_PREFIX = "chaos-"

# Short periods so that a run settles in about a minute after its last fault. The visibility
# timeout bounds how long a SIGKILLed worker's messages wait before another worker takes
# them; it must exceed LONG_WAIT_S + TASK_TIME_LIMIT_S + LEASE_MARGIN_S (the settings check
# this; TASK_TIME_LIMIT_S caps every task's own limit).
TIMINGS = {
    "LONG_WAIT_S": "5",
    "LEASE_MARGIN_S": "5",
    "RELEASE_INTERVAL_S": "0.5",
    "RETRY_BACKOFF_BASE_S": "0.5",
    "RETRY_BACKOFF_MAX_S": "5",
    "BREAKER_OPEN_S": "2",
    "BREAKER_OPEN_MAX_S": "8",
    "TASK_SOFT_TIME_LIMIT_S": "15",
    "TASK_TIME_LIMIT_S": "20",
    "BROKER_VISIBILITY_TIMEOUT_S": "40",
    "BROKER_RESTORE_INTERVAL_S": "5",
    "RECONCILE_INTERVAL_S": "3",
    "RECONCILE_STALE_S": "8",
    "WORKER_SOFT_SHUTDOWN_TIMEOUT_S": "10",
    "ELASTICSEARCH_REQUEST_TIMEOUT_S": "2",
    "CHATBOT_CONNECT_TIMEOUT_S": "1",
    "CHATBOT_READ_TIMEOUT_S": "5",
    "PUBLISH_MAX_RETRIES": "1",
    "BROKER_CONNECT_TIMEOUT_S": "1",
}


class _Spawner:
    """Starts every child from one thread that lives as long as this process.

    The kernel sends the parent-death signal when the *thread* that forked a child ends, not
    the process: a child started from a fault's short-lived thread would be stopped as soon
    as that thread finished.
    """

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        threading.Thread(target=self._serve, name="spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call, future = self._requests.get()
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

    def popen(self, args: list[str], **options: Any) -> subprocess.Popen[bytes]:
        future: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((lambda: subprocess.Popen(args, **options), future))
        return future.result()


_SPAWNER = _Spawner()


@dataclass
class Proc:
    """One process (and its children: it leads its own process group)."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    ready: Callable[[], bool] = lambda: True
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, timeout_s: float = 30) -> None:
        """Start it and wait until it is ready."""
        with self.log_path.open("ab") as log:
            self.popen = _SPAWNER.popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.starts += 1
        wait_until(self._ready, timeout_s, what=f"{self.name} to start")

    def _ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited at start; see {self.log_path}")
        return self.ready()

    def alive(self) -> bool:
        """Whether the main process still runs."""
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int, *, group: bool = True) -> None:
        """Send `signum` to the whole process group, or to the main process only."""
        if self.popen is not None and self.popen.poll() is None:
            if group:
                os.killpg(self.popen.pid, signum)
            else:
                os.kill(self.popen.pid, signum)

    def wait(self, timeout_s: float) -> bool:
        """Wait for the main process to end; whether it did."""
        if self.popen is None:
            return True
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the group, as the kernel's OOM killer or a node failure would."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM, then SIGKILL after `grace_s`."""
        self.signal(signal.SIGTERM)
        if not self.wait(grace_s):
            self.kill()
        elif self.popen is not None:
            # Pool children left behind by a main process that ended first.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)


@dataclass
class Stack:
    """Every process of a run plus the addresses the load and the checks need."""

    workdir: Path
    database_url: str
    # Settings of every process (the chaos run's short periods by default), and the workers:
    # name -> (Celery app, queue); other runs (the benchmarks) give their own.
    timings: dict[str, str] = field(default_factory=lambda: dict(TIMINGS))
    worker_layout: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(WORKERS))
    concurrency: int = 2
    procs: dict[str, Proc] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    # Held while a fault stops and restarts a process on purpose.
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    # Processes that exited on their own, with their exit status, in order.
    exits: list[tuple[str, int | None]] = field(default_factory=list)
    _watching: threading.Event = field(default_factory=threading.Event)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def es_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['es']}"

    @property
    def chatbot_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['chatbot']}"

    def control_url(self, standin: str) -> str:
        """The control API of a stand-in (es, embeddings, chatbot)."""
        return f"http://127.0.0.1:{self.ports[standin + '-control']}"

    @property
    def workers(self) -> list[str]:
        """Names of the worker processes."""
        return list(self.worker_layout)

    def env(self) -> dict[str, str]:
        """The environment of every stack process."""
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "ENVIRONMENT": "development",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "REDIS_KEY_PREFIX": KEY_PREFIX,
            "ELASTICSEARCH_URL": self.es_url,
            "ES_INDEX_PREFIX": INDEX_PREFIX,
            "EMBEDDINGS_PROVIDER": "openai",
            "EMBEDDINGS_BASE_URL": f"http://127.0.0.1:{self.ports['embeddings']}/v1",
            "EMBEDDINGS_API_KEY": EMBEDDINGS_KEY,
            "EMBEDDINGS_DIMENSIONS": "8",
            "CHATBOT_URL": self.chatbot_url,
            "CHATBOT_API_TOKEN": CHATBOT_TOKEN,
            "STORAGE_LOCAL_DIR": str(self.workdir / "uploads"),
            "PUBLIC_API_URL": self.api_url,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.ports["api"]),
            "LOG_JSON": "true",
            "LOG_LEVEL": "INFO",
            # Two es-workers share one machine here: no metrics endpoints (their ports clash).
            "ES_WORKER_METRICS_PORT": "0",
            "HTTP_WORKER_METRICS_PORT": "0",
            "SCHEDULER_METRICS_PORT": "0",
            # Workers refuse to start without it: SIGTERM is Celery's bounded soft shutdown.
            **processes.WORKER_ENV,
            # Last, so that a run's own settings win (the benchmarks log less, for one).
            **self.timings,
        }

    def _add(
        self,
        name: str,
        args: list[str],
        ready: Callable[[], bool],
        extra: dict[str, str] | None = None,
    ) -> None:
        env = {**self.env(), **(extra or {})}
        self.procs[name] = Proc(name, args, env, self.workdir / f"{name}.log", ready=ready)
        self.locks[name] = threading.Lock()

    def build(self) -> None:
        """Declare the processes (nothing starts yet)."""
        for name in ("redis", "es", "es-control", "embeddings", "embeddings-control"):
            self.ports[name] = free_port()
        for name in ("chatbot", "chatbot-control", "api"):
            self.ports[name] = free_port()
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir(parents=True, exist_ok=True)
        redis_port = self.ports["redis"]
        self._add(
            "redis",
            [
                "redis-server",
                "--port", str(redis_port),
                "--bind", "127.0.0.1",
                "--dir", str(redis_dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--maxmemory-policy", "noeviction",
            ],
            lambda: port_open(redis_port),
        )  # fmt: skip
        for name, module, extra in (
            ("es", "elasticsearch", ["--gc-deletes-s", "1"]),
            ("embeddings", "embeddings", []),
            ("chatbot", "chatbotmobile", ["--token", CHATBOT_TOKEN]),
        ):
            port, control = self.ports[name], self.ports[f"{name}-control"]
            self._add(
                f"{name}-standin",
                [
                    sys.executable, "-m", f"tools.standins.{module}",
                    "--host", "127.0.0.1",
                    "--port", str(port),
                    "--control-port", str(control),
                    *extra,
                ],
                _both_open(port, control),
            )  # fmt: skip
        self._add(
            "api",
            processes.API.command(python=sys.executable),
            lambda: _answers(f"{self.api_url}/health/ready"),
        )
        for name, (app, consumed) in self.worker_layout.items():
            self._add(
                name,
                _worker(app, consumed).command(
                    python=sys.executable, node=f"{name}@%h", concurrency=self.concurrency
                ),
                lambda: True,
                {"WORKER_HEARTBEAT_FILE": str(self.workdir / f"{name}.alive")},
            )
        self._add(
            processes.SCHEDULER.name,
            processes.SCHEDULER.command(
                python=sys.executable, state=str(self.workdir / "celerybeat-schedule")
            ),
            lambda: True,
            {"WORKER_HEARTBEAT_FILE": str(self.workdir / "scheduler.alive")},
        )

    def start(self, only: set[str] | None = None) -> None:
        """Start every process (or those in `only`), dependencies first, then restart
        whichever exits by itself."""
        for name, proc in self.procs.items():
            if only is None or name in only:
                proc.start()
        self._watching.set()
        threading.Thread(target=self._watch, name="restart-policy", daemon=True).start()

    def _watch(self) -> None:
        # Kubernetes' restartPolicy: Always. A process that exits when no fault stopped it
        # is started again after a second, and the exit is reported.
        while self._watching.is_set():
            for name, proc in self.procs.items():
                lock = self.locks[name]
                if proc.popen is None or proc.alive() or not lock.acquire(blocking=False):
                    continue  # never started, running, or being restarted on purpose
                try:
                    if self._watching.is_set() and not proc.alive():
                        status = proc.popen.returncode if proc.popen else None
                        self.exits.append((name, status))
                        time.sleep(1)
                        proc.start(timeout_s=60)
                finally:
                    lock.release()
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop every process, workers before what they talk to."""
        self._watching.clear()
        for name, proc in reversed(list(self.procs.items())):
            with self.locks[name]:
                proc.stop(grace_s=15)


def _worker(app: str, queue: str) -> processes.Process:
    """The worker of the process table that runs `app` on `queue`."""
    for process in processes.PROCESSES.values():
        if process.module == app and queue in process.queues and not process.beat:
            return process
    raise ValueError(f"no worker in services/core/processes.py runs {app} on queue {queue}")


def _both_open(port: int, control: int) -> Callable[[], bool]:
    return lambda: port_open(port) and port_open(control)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False
