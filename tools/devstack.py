"""Run the whole stack as local processes in the foreground, with prefixed logs.

    python tools/devstack.py            (what `make up` runs after migrating)

Ctrl-C (or SIGTERM) stops every process: SIGTERM first, so workers finish their running
tasks (within WORKER_SOFT_SHUTDOWN_TIMEOUT_S), then SIGKILL for what is still alive after the
grace period. If one process dies on its own, the others are stopped too and the exit status
is non-zero.

This is the development stack: it runs with ENVIRONMENT=development unless told otherwise,
and gives Flower development credentials (printed at start) unless FLOWER_BASIC_AUTH is set.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The settings fail closed; this stack is development by definition (set before they load).
os.environ.setdefault("ENVIRONMENT", "development")

from services.core import processes  # noqa: E402
from services.core.config import Settings, get_settings  # noqa: E402
from tools import monitoring  # noqa: E402

COLORS = ["36", "32", "33", "35", "34", "31", "96", "92"]
GRACE_S = float(os.environ.get("DEVSTACK_GRACE_S", "30"))
# Every worker: SIGTERM is Celery's bounded (soft) shutdown, short on a laptop.
WORKER_ENV = {
    **processes.WORKER_ENV,
    "WORKER_SOFT_SHUTDOWN_TIMEOUT_S": os.environ.get("WORKER_SOFT_SHUTDOWN_TIMEOUT_S", "10"),
}


@dataclass
class Spec:
    """One process of the stack, with what it adds to the stack's environment."""

    name: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _worker_env(name: str) -> dict[str, str]:
    heartbeat = ROOT / "var" / "run" / f"{name}.alive"
    return {**WORKER_ENV, "WORKER_HEARTBEAT_FILE": str(heartbeat)}


def _standin(name: str, module: str, ports: tuple[str, str, str, str]) -> tuple[Spec, str]:
    """A stand-in process on the ports named by env variables (or their defaults); its URL."""
    port_var, default_port, control_var, default_control = ports
    port = os.environ.get(port_var, default_port)
    control = os.environ.get(control_var, default_control)
    args = [
        sys.executable,
        "-m",
        f"tools.standins.{module}",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--control-port",
        control,
    ]
    return Spec(name, args), f"http://127.0.0.1:{port}"


def standins(env: dict[str, str]) -> list[Spec]:
    """Stand-ins for the downstreams that are not configured, and the settings that use them.

    Without ELASTICSEARCH_URL the stack gets the Elasticsearch stand-in on 127.0.0.1:9200 (where
    a local cluster would listen) and, unless an embeddings provider is configured, the
    embeddings stand-in; without CHATBOT_URL, the ChatbotMobile stand-in on 127.0.0.1:8090.
    `env` is updated so that every process talks to them.
    """
    specs: list[Spec] = []
    if "ELASTICSEARCH_URL" not in os.environ:
        spec, url = _standin(
            "es-standin",
            "elasticsearch",
            ("ES_STANDIN_PORT", "9200", "ES_STANDIN_CONTROL_PORT", "9291"),
        )
        specs.append(spec)
        env["ELASTICSEARCH_URL"] = url
        if "EMBEDDINGS_PROVIDER" not in os.environ:
            spec, url = _standin(
                "emb-standin",
                "embeddings",
                ("EMBEDDINGS_STANDIN_PORT", "8091", "EMBEDDINGS_STANDIN_CONTROL_PORT", "8191"),
            )
            specs.append(spec)
            env.update(
                EMBEDDINGS_PROVIDER="openai",
                EMBEDDINGS_BASE_URL=f"{url}/v1",
                EMBEDDINGS_API_KEY="development-only-key",
                EMBEDDINGS_DIMENSIONS="64",
            )
    if "CHATBOT_URL" not in os.environ:
        spec, url = _standin(
            "chat-standin",
            "chatbotmobile",
            ("CHATBOT_STANDIN_PORT", "8090", "CHATBOT_STANDIN_CONTROL_PORT", "8190"),
        )
        specs.append(spec)
        env.update(CHATBOT_URL=url, CHATBOT_API_TOKEN="development-only-token")
    return specs


def stack() -> list[Spec]:
    """The processes of the table in services/core/processes.py, with this machine's settings."""
    settings = get_settings()
    (ROOT / "var").mkdir(exist_ok=True)
    pools = {
        processes.ES_WORKER.name: os.environ.get("ES_WORKER_CONCURRENCY"),
        processes.HTTP_WORKER.name: os.environ.get("HTTP_WORKER_CONCURRENCY"),
    }
    specs = []
    for process in processes.PROCESSES.values():
        args = process.command(
            python=sys.executable,
            concurrency=pools.get(process.name),
            log_level=settings.log_level,
            state=str(ROOT / "var" / "celerybeat-schedule") if process.beat else None,
            address=settings.flower_host,
            port=settings.flower_port,
        )
        env = _worker_env(process.name) if process.env else {}
        specs.append(Spec(process.name, args, env))
    return specs


# --- observability (issue 12) ---------------------------------------------------------------
def observability(settings: Settings) -> tuple[list[Spec], list[str]]:
    """celery-exporter (when its virtualenv is built), and where every metrics endpoint is."""
    host = settings.metrics_host
    lines = [
        f"metrics: api http://{settings.api_host}:{settings.api_port}/metrics",
        f"metrics: es-worker http://{host}:{settings.es_worker_metrics_port}/metrics",
        f"metrics: http-worker http://{host}:{settings.http_worker_metrics_port}/metrics",
        f"metrics: scheduler http://{host}:{settings.scheduler_metrics_port}/metrics "
        "(with the shared state: backlog, queue depth, breakers)",
    ]
    python = monitoring.celery_exporter_python()
    if python is None:
        lines.append("celery-exporter not started: `make celery-exporter` builds its virtualenv")
        return [], lines
    port = int(os.environ.get("CELERY_EXPORTER_PORT", str(monitoring.CELERY_EXPORTER_PORT)))
    command = monitoring.celery_exporter_command(
        python,
        redis_url=settings.redis_url,
        key_prefix=settings.redis_key_prefix,
        host=host,
        port=port,
    )
    lines.append(f"metrics: celery-exporter http://{host}:{port}/metrics")
    return [Spec("celery-exporter", command)], lines


# --- end of observability ----------------------------------------------------------------


def _die_with_parent() -> None:
    # Linux: if this runner is killed (even with SIGKILL), its children get SIGTERM instead of
    # living on as orphans that keep consuming the queues.
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class Stack:
    """Starts, watches and stops the processes."""

    def __init__(self, specs: list[Spec], env: dict[str, str]) -> None:
        self.specs = specs
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.width = max(len(s.name) for s in specs)
        self.stopping = threading.Event()
        self.print_lock = threading.Lock()

    def start(self) -> None:
        for index, spec in enumerate(self.specs):
            proc = subprocess.Popen(
                spec.args,
                cwd=ROOT,
                env={**self.env, **spec.env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            self.procs[spec.name] = proc
            color = COLORS[index % len(COLORS)]
            threading.Thread(target=self._pump, args=(spec.name, proc, color), daemon=True).start()
            self._say(f"started {spec.name} (pid {proc.pid})")

    def _pump(self, name: str, proc: subprocess.Popen[bytes], color: str) -> None:
        assert proc.stdout is not None
        prefix = (
            f"\033[{color}m{name.ljust(self.width)} |\033[0m "
            if sys.stdout.isatty()
            else (f"{name.ljust(self.width)} | ")
        )
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self.print_lock:
                print(prefix + line, flush=True)

    def _say(self, text: str) -> None:
        with self.print_lock:
            print(f"{'devstack'.ljust(self.width)} | {text}", flush=True)

    def watch(self) -> int:
        """Wait until asked to stop or until a process dies; the exit status."""
        while not self.stopping.is_set():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    self._say(f"{name} exited with status {proc.returncode}; stopping the stack")
                    self.stop()
                    return 1
            self.stopping.wait(0.5)
        self.stop()
        return 0

    def stop(self) -> None:
        self.stopping.set()
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self._say(f"stopping {name}")
                # The main process only, as Kubernetes does: a Celery worker then gives its
                # pool's running tasks the soft-shutdown timeout.
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"{name} still running after {GRACE_S:g} s; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # Whatever its main process left behind in its group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def flower_credentials(env: dict[str, str]) -> str:
    """Flower's `user:password`: FLOWER_BASIC_AUTH, or new development ones put into `env`.

    Flower answers its API only with authentication (or FLOWER_UNAUTHENTICATED_API, which
    would leave it open to anyone who reaches the port).
    """
    if not env.get("FLOWER_BASIC_AUTH"):
        env["FLOWER_BASIC_AUTH"] = f"dev:{secrets.token_urlsafe(12)}"
    return env["FLOWER_BASIC_AUTH"]


def main() -> int:
    """Run the stack until Ctrl-C."""
    settings = get_settings()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    # ChatbotMobile downloads locally stored uploads from the API.
    env.setdefault("PUBLIC_API_URL", f"http://{settings.api_host}:{settings.api_port}")
    watchers, endpoints = observability(settings)
    flower_user, _, flower_password = flower_credentials(env).partition(":")
    runner = Stack(standins(env) + stack() + watchers, env)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stopping.set())
    runner.start()
    runner._say(
        f"API on http://{settings.api_host}:{settings.api_port} "
        f"(try /health/celery), Flower on http://{settings.flower_host}:{settings.flower_port}; "
        "Ctrl-C stops everything"
    )
    for line in endpoints:
        runner._say(line)
    runner._say(f"Flower user: {flower_user} password: {flower_password}")
    status = runner.watch()
    runner._say("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
