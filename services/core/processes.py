"""Every deployable process, declared once: command, queues, ports, probes, shutdown timeout.

`make up` (tools/devstack.py), the chaos stack (tools/chaos/stack.py) and the benchmarks build
their command lines from this table; the chart's contract tests (tests/chart/) and the docs
check (tests/unit/test_processes_docs.py) fail when the chart or the README's process table
says otherwise. Nothing here imports a process: the table is data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.core.taskdefs import Queue

if TYPE_CHECKING:
    from services.core.config import Settings

__all__ = [
    "API",
    "CELERY_EXPORTER",
    "ES_WORKER",
    "FLOWER",
    "HTTP_WORKER",
    "PROCESSES",
    "SCHEDULER",
    "WORKER_ENV",
    "Probe",
    "Process",
    "celery_exporter_options",
    "markdown_table",
    "worker_command",
]

# Every worker refuses to start without it: SIGTERM becomes Celery's bounded soft shutdown.
WORKER_ENV = {"REMAP_SIGTERM": "SIGQUIT"}
# Events and the startup handshake cost every worker a broadcast per peer; we use neither.
_WORKER_FLAGS = ("--without-mingle", "--without-gossip")


@dataclass(frozen=True)
class Probe:
    """A Kubernetes probe: an HTTP GET on the process's `port` name, or a command."""

    path: str | None = None
    port: str | None = None
    command: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the docs."""
        return f"GET {self.path}" if self.path else " ".join(self.command)


@dataclass(frozen=True)
class Process:
    """One deployable: how it starts, what it consumes, where it listens, how it is probed."""

    name: str
    summary: str
    # `python -m <module>` for the API; Celery's `-A <module> <subcommand>` otherwise.
    module: str
    subcommand: str | None = None
    queues: tuple[Queue, ...] = ()
    beat: bool = False
    # Default pool size (None: not a worker); `fixed`: the pool is never resized.
    concurrency: int | None = None
    fixed_concurrency: bool = False
    # Settings fields of its ports (None: it has none).
    http_port_setting: str | None = None
    metrics_port_setting: str | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None
    startup: Probe | None = None
    # Seconds a SIGTERM leaves running work: a constant, or a Settings field.
    shutdown_timeout_s: float = 0
    shutdown_timeout_setting: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    @property
    def node(self) -> str:
        """The prefix of its Celery node name (`<node>@<host>`)."""
        return self.queues[0].value if self.queues and not self.beat else self.name

    def command(
        self,
        *,
        python: str = "python",
        host: str = "%h",
        node: str | None = None,
        concurrency: int | str | None = None,
        log_level: str = "INFO",
        state: str | None = None,
        address: str | None = None,
        port: int | str | None = None,
    ) -> list[str]:
        """Its command line. `host` goes into the worker's node name (`node` replaces the
        whole name), `state` is beat's schedule file or Flower's database, `address` and
        `port` are where Flower listens."""
        if self.subcommand is None:
            return [python, "-m", self.module]
        if self.subcommand == "flower":
            args = [python, "-m", "celery", "-A", self.module, self.subcommand]
            if address is not None:
                args.append(f"--address={address}")
            if port is not None:
                args.append(f"--port={port}")
            if state is not None:
                args.append(f"--db={state}")
            return args
        pool = self.concurrency if self.fixed_concurrency or concurrency is None else concurrency
        return worker_command(
            self.module,
            ",".join(q.value for q in self.queues),
            python=python,
            node=node or f"{self.node}@{host}",
            concurrency=pool or 1,
            beat=self.beat,
            schedule=state,
            log_level=log_level,
        )

    def ports(self, settings: Settings) -> dict[str, int]:
        """Its ports under `settings` (name -> port; 0: off)."""
        ports = {}
        if self.http_port_setting:
            ports[self.http_port_name] = int(getattr(settings, self.http_port_setting))
        if self.metrics_port_setting:
            ports["metrics"] = int(getattr(settings, self.metrics_port_setting))
        return ports

    @property
    def http_port_name(self) -> str:
        """The name of its HTTP port in the chart (its probes refer to it)."""
        return "http" if self.name == "api" else self.name

    def shutdown_timeout(self, settings: Settings) -> float:
        """How long a SIGTERM leaves its running work under `settings`."""
        if self.shutdown_timeout_setting:
            return float(getattr(settings, self.shutdown_timeout_setting))
        return self.shutdown_timeout_s


def worker_command(
    app: str,
    queues: str,
    *,
    python: str = "python",
    node: str,
    concurrency: int | str,
    beat: bool = False,
    schedule: str | None = None,
    log_level: str = "INFO",
) -> list[str]:
    """A `celery worker` of `app` on `queues` (comma-separated), with embedded beat (its
    `schedule` file): the one spelling of every worker's command line."""
    args = [python, "-m", "celery", "-A", app, "worker"]
    if beat:
        args.append("--beat")
    args += ["-Q", queues, "-c", str(concurrency), "-n", node]
    if beat and schedule is not None:
        args += ["--schedule", schedule]
    return [*args, *_WORKER_FLAGS, "-l", log_level]


_HEALTH_LIVE = Probe(path="/health/live", port="http")
_WORKER_LIVE = Probe(command=("python", "-m", "services.core.probes", "worker-live"))


def _worker(name: str, module: str, queue: Queue, metrics: str, summary: str) -> Process:
    return Process(
        name=name,
        summary=summary,
        module=module,
        subcommand="worker",
        queues=(queue,),
        concurrency=2,
        metrics_port_setting=metrics,
        liveness=_WORKER_LIVE,
        shutdown_timeout_setting="worker_soft_shutdown_timeout_s",
        env=tuple(WORKER_ENV.items()),
    )


API = Process(
    name="api",
    summary="FastAPI: validates, writes the task-log row, publishes by task name. "
    "Never imports worker code.",
    module="services.api.main",
    http_port_setting="api_port",
    # Readiness follows the task log, not Redis: a write is accepted once its row is committed.
    readiness=Probe(path="/health/ready", port="http"),
    liveness=_HEALTH_LIVE,
    startup=_HEALTH_LIVE,
    # uvicorn lets in-flight requests finish this long on SIGTERM.
    shutdown_timeout_s=20,
)
ES_WORKER = _worker(
    "es-worker",
    "services.es_worker",
    Queue.ES,
    "es_worker_metrics_port",
    "runs the Elasticsearch tasks (queue `es`)",
)
HTTP_WORKER = _worker(
    "http-worker",
    "services.http_worker",
    Queue.HTTP,
    "http_worker_metrics_port",
    "runs the ChatbotMobile tasks (queue `http`)",
)
SCHEDULER = Process(
    name="scheduler",
    summary="Celery beat plus the one consumer of the `maintenance` queue (reconciler, "
    "task-log and upload cleanup). One replica.",
    module="services.scheduler",
    subcommand="worker",
    queues=(Queue.MAINTENANCE,),
    beat=True,
    concurrency=1,
    fixed_concurrency=True,
    metrics_port_setting="scheduler_metrics_port",
    liveness=_WORKER_LIVE,
    shutdown_timeout_setting="worker_soft_shutdown_timeout_s",
    env=tuple(WORKER_ENV.items()),
)
FLOWER = Process(
    name="flower",
    summary="live view of workers and tasks from Celery events",
    module="services.core.celery_app",
    subcommand="flower",
    http_port_setting="flower_port",
    # /healthcheck answers without authentication.
    readiness=Probe(path="/healthcheck", port="flower"),
    liveness=Probe(path="/healthcheck", port="flower"),
)
PROCESSES: dict[str, Process] = {
    p.name: p for p in (API, ES_WORKER, HTTP_WORKER, SCHEDULER, FLOWER)
}


@dataclass(frozen=True)
class _Exporter:
    """celery-exporter: not our code (its own image or virtualenv), but our options."""

    name: str = "celery-exporter"
    summary: str = "Prometheus metrics from Celery events and queue lengths (its own image)"
    default_port: int = 9808  # its own default
    liveness: Probe = Probe(path="/health", port="metrics")


CELERY_EXPORTER = _Exporter()


def celery_exporter_options(
    *,
    broker_url: str,
    host: str,
    port: int | str,
    key_prefix: str = "",
    tls: bool = False,
    tls_ca_certs: str | None = None,
) -> list[str]:
    """celery-exporter's options against our broker (after its entry point)."""
    args = [
        f"--broker-url={broker_url}",
        f"--host={host}",
        f"--port={port}",
        "--accept-content=json",
        # Keep running through a broker restart instead of exiting.
        "--retry-interval=5",
        # The hostname of whoever published a task (an API pod) is no label worth having.
        "--generic-hostname-task-sent-metric",
        "-Q",
        ",".join(q.value for q in Queue),
    ]
    if key_prefix:
        # Our queues and events live under REDIS_KEY_PREFIX (kombu's global_keyprefix).
        args += ["--broker-transport-option", f"global_keyprefix={key_prefix}"]
    if tls:
        # Without options its kombu takes rediss:// with no certificate check; 2 is
        # CERT_REQUIRED (it turns numeric option values into numbers).
        args += ["--broker-ssl-option", "ssl_cert_reqs=2"]
        if tls_ca_certs:
            args += ["--broker-ssl-option", f"ssl_ca_certs={tls_ca_certs}"]
    return args


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The README's table of processes (tests/unit/test_processes_docs.py keeps them equal)."""
    rows = [
        "| process | command | ports | probes | shutdown | what it does |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in PROCESSES.values():
        env = " ".join(f"{k}={v}" for k, v in p.env)
        command = " ".join(
            p.command(state="FILE" if p.beat else None, address="$FLOWER_HOST", port="$FLOWER_PORT")
        )
        command = f"{env} {command}" if env else command
        ports = [s.upper() for s in (p.http_port_setting, p.metrics_port_setting) if s]
        probes = [
            f"{kind}: `{probe.describe()}`"
            for kind, probe in (
                ("ready", p.readiness),
                ("live", p.liveness),
                ("startup", p.startup),
            )
            if probe
        ]
        if p.shutdown_timeout_setting:
            shutdown = f"`{p.shutdown_timeout_setting.upper()}`"
        else:
            shutdown = f"{p.shutdown_timeout_s:g} s" if p.shutdown_timeout_s else "-"
        cells = [
            p.name,
            f"`{command}`",
            ", ".join(f"`{s}`" for s in ports) or "-",
            "<br>".join(probes) or "-",
            shutdown,
            p.summary,
        ]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    exporter = CELERY_EXPORTER
    options = celery_exporter_options(
        broker_url="$REDIS_URL", host="$METRICS_HOST", port="$CELERY_EXPORTER_PORT"
    )
    cells = [
        exporter.name,
        "`" + " ".join([exporter.name, *options]) + "`",
        f"`CELERY_EXPORTER_PORT` ({exporter.default_port})",
        f"live: `{exporter.liveness.describe()}`",
        "-",
        exporter.summary,
    ]
    rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)
