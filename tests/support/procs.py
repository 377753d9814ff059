"""Real processes for tests: Celery workers and a throwaway redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from services.core import processes
from tools.localservices import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SKEW_SHIM = Path(__file__).resolve().parent / "skew"
__all__ = ["ROOT", "RedisServer", "Worker", "free_port", "scheduler", "wait_until"]


class Worker:
    """A real `celery worker` process in its own process group."""

    def __init__(
        self,
        app: str,
        queues: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        concurrency: int = 2,
        include: str = "tests.support.tasks",
        beat: bool = False,
        clock_skew_s: float = 0.0,
    ) -> None:
        self.name = f"{queues.replace(',', '-')}-{uuid.uuid4().hex[:6]}"
        self.log_path = log_dir / f"worker-{self.name}.log"
        self.heartbeat_path = log_dir / f"worker-{self.name}.alive"
        self.env = {
            **os.environ,
            # What every deployment of a worker sets: SIGTERM is Celery's soft shutdown.
            **processes.WORKER_ENV,
            "WORKER_HEARTBEAT_FILE": str(self.heartbeat_path),
            **(env or {}),
            "PYTHONPATH": str(ROOT),
        }
        if clock_skew_s:
            # A machine whose clock drifted: tests/support/skew/sitecustomize.py offsets it.
            self.env["CLOCK_SKEW_S"] = str(clock_skew_s)
            self.env["PYTHONPATH"] = f"{SKEW_SHIM}{os.pathsep}{ROOT}"
        self.args = processes.worker_command(
            app,
            queues,
            python=sys.executable,
            node=f"{self.name}@%h",
            concurrency=concurrency,
            # Embedded beat keeps its schedule file with the logs, not in the working tree.
            beat=beat,
            schedule=str(log_dir / f"beat-{self.name}"),
        )
        if include:
            self.args += ["-I", include]
        self.proc: subprocess.Popen[bytes] | None = None
        # Where this run's lines start in the log (a restarted worker appends to it).
        self._log_start = 0

    def start(self, timeout_s: float = 30) -> Worker:
        """Start and wait until the worker says it is ready."""
        self.launch()
        return self.wait_ready(timeout_s)

    def launch(self) -> Worker:
        """Start the process without waiting (several workers can then start at once)."""
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout_s: float = 30) -> Worker:
        """Wait until the launched worker says it is ready."""
        wait_until(lambda: self._ready(), timeout_s, what=f"worker {self.name} ready")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker exited early; see {self.log_path}:\n{self.log()[-3000:]}")
        if not self.log_path.exists():
            return False
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return b" ready." in log.read()

    def log(self) -> str:
        """Everything the worker printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool at once."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM (the soft shutdown), then SIGKILL if it does not end in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class RedisServer:
    """A private redis-server on a free loopback port."""

    def __init__(self, workdir: Path, port: int | None = None, *, durable: bool = False) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        # durable: the settings the system needs in production (append-only file, fsync every
        # second, never evict); otherwise nothing is kept across a restart.
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run `make test` to install it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.workdir),
                *self._persistence(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, 10, what="redis-server to answer")
        return self

    def _persistence(self) -> list[str]:
        if not self.durable:
            return ["--appendonly", "no"]
        return [
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
        ]

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to write anything more."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# A bench's scheduler releases held tasks; its reconciler stays out of the way of tests that
# write rows straight into the log (the reconciler has tests of its own).
BENCH_SCHEDULER = {"RECONCILE_INTERVAL_S": "3600"}


def scheduler(log_dir: Path, env: dict[str, str] | None = None) -> Worker:
    """The scheduler deployable: beat plus the one consumer of the maintenance queue."""
    return Worker(
        "services.scheduler", "maintenance", log_dir, env=env, concurrency=1, include="", beat=True
    )
