"""Real Prometheus and Alertmanager processes for tests, on free loopback ports."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from tests.support.procs import ROOT, free_port, wait_until

RULES = ROOT / "charts/durable-writes/files/prometheus/rules.yaml"
RULE_TESTS = ROOT / "tests/monitoring/rules_test.yaml"
ALERTMANAGER_CONFIG = ROOT / "k8s/monitoring/alertmanager.yaml"
DASHBOARDS = ROOT / "charts/durable-writes/files/dashboards"


def binary(*names: str) -> str:
    """The first of `names` on PATH; a clear error when none is (make test installs them)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        f"none of {names} is installed: run `make test` (tools/ensure-services.sh "
        "prometheus alertmanager installs them)"
    )


def alerts(rules_path: Path = RULES) -> list[dict[str, Any]]:
    """Every alerting rule of a rules file."""
    groups = yaml.safe_load(rules_path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


class Process:
    """A monitoring program in its own process, with its log kept."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the program; its output goes to the log file."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        """What the program printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate, then kill if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _ready(url: str, process: Process) -> bool:
    if not process.alive():
        raise RuntimeError(f"{process.args[0]} exited:\n{process.log()[-3000:]}")
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


class Alertmanager(Process):
    """`alertmanager` with a config file, its API on a free port, clustering off."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [
                binary("alertmanager", "prometheus-alertmanager"),
                f"--config.file={config}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            workdir / "alertmanager.log",
        )

    @property
    def url(self) -> str:
        """Base URL of its API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until it is ready."""
        super().start()
        wait_until(lambda: _ready(f"{self.url}/-/ready", self), 30, what="alertmanager ready")


class Prometheus(Process):
    """`prometheus` with a config file (the caller writes it), on a free port."""

    def __init__(self, config: Path, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [
                binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            workdir / "prometheus.log",
        )

    @property
    def url(self) -> str:
        """Base URL of its API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until it is ready."""
        super().start()
        wait_until(lambda: _ready(f"{self.url}/-/ready", self), 30, what="prometheus ready")

    def query(self, expr: str, since: float | None = None) -> httpx.Response:
        """An instant query, or a range query from `since` (epoch seconds) to now, one
        point a second; answered as is (a parse error is a 400 with its reason)."""
        if since is None:
            return httpx.get(
                f"{self.url}/api/v1/query", params={"query": expr}, timeout=10, trust_env=False
            )
        params: dict[str, str | float] = {
            "query": expr,
            "start": since,
            "end": time.time(),
            "step": 1,
        }
        return httpx.get(
            f"{self.url}/api/v1/query_range", params=params, timeout=10, trust_env=False
        )


def panel_queries(directory: Path = DASHBOARDS) -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) of every query of every panel."""
    found: list[tuple[str, str, str]] = []
    for path in sorted(directory.glob("*.json")):
        board = yaml.safe_load(path.read_text())  # JSON is YAML
        for panel in board["panels"]:
            for target in panel.get("targets") or []:
                found.append((path.name, panel["title"], target["expr"]))
    return found


def concrete(expr: str, rate_window: str = "1m") -> str:
    """A panel query as Grafana sends it with "All" selected and a given rate window."""
    for variable in ("$queue", "$task", "$namespace", "$release"):
        expr = expr.replace(variable, ".*")
    return expr.replace("$__rate_interval", rate_window)


class Webhook:
    """An Alertmanager webhook receiver on a free loopback port; keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with hook._lock:
                    hook.received.append((time.monotonic(), self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL the receivers are pointed at."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def firing(self, alertname: str) -> list[tuple[float, str, dict[str, Any]]]:
        """(time received, path, alert) of every firing alert of that name received so far."""
        with self._lock:
            return [
                (at, path, alert)
                for at, path, body in self.received
                for alert in body.get("alerts", [])
                if alert["status"] == "firing" and alert["labels"].get("alertname") == alertname
            ]


def alertmanager_config_for(webhook: str, target: Path) -> Path:
    """The example Alertmanager config with its webhook receivers pointed at `webhook`."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            path = urlsplit(hook["url"]).path
            hook["url"] = f"{webhook}{path}"
    target.write_text(yaml.safe_dump(config))
    return target
