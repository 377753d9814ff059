"""The whole stack as real processes, with Prometheus and Alertmanager watching it.

For the end-to-end monitoring test: stand-ins, the API, both workers, the scheduler (beat
and the shared-state exporter), celery-exporter from its own virtualenv, a real Prometheus
loading the very rules file and a real Alertmanager with the example config, its webhooks
pointed at a receiver served by the test. Every port is a free loopback port.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.monitoring import (
    Alertmanager,
    Process,
    Prometheus,
    Webhook,
    alertmanager_config_for,
)
from tests.support.procs import ROOT, Worker, free_port, wait_until
from tests.support.standins import Standin
from tools import monitoring

CHATBOT_TOKEN = "obs-chatbot-token"
# Fast enough for a short test, with the shape of the defaults.
TIMINGS = {
    "RECONCILE_INTERVAL_S": "1",
    "RECONCILE_STALE_S": "2",
    "BREAKER_FAILURE_THRESHOLD": "3",
    "BREAKER_OPEN_S": "1",
    "BREAKER_OPEN_MAX_S": "2",
    "RETRY_BACKOFF_BASE_S": "0.2",
    "RETRY_BACKOFF_MAX_S": "1",
    "ELASTICSEARCH_REQUEST_TIMEOUT_S": "2",
}


@dataclass
class Observed:
    """The running stack and its watchers."""

    api: str
    env: dict[str, str]
    es: Standin
    chatbot: Standin
    prometheus: Prometheus
    alertmanager: Alertmanager
    webhook: Webhook
    targets: dict[str, str]

    def query(self, expr: str, since: float | None = None) -> dict[str, Any]:
        """A query that must parse; its `data`: instant, or a range from `since` (epoch s)."""
        answer = self.prometheus.query(expr, since)
        assert answer.status_code == 200, f"{expr}: {answer.text}"
        body: dict[str, Any] = answer.json()
        assert body["status"] == "success", body
        data: dict[str, Any] = body["data"]
        return data


class _Api(Process):
    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__([sys.executable, "-m", "services.api.main"], log)
        self.env = env

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )


class _CeleryExporter(_Api):
    def __init__(self, env: dict[str, str], log: Path, port: int) -> None:
        python = monitoring.celery_exporter_python()
        if python is None:
            raise RuntimeError("celery-exporter's virtualenv is missing: run `make test`")
        super().__init__(env, log)
        self.args = monitoring.celery_exporter_command(
            python,
            redis_url=env["REDIS_URL"],
            key_prefix=env["REDIS_KEY_PREFIX"],
            host="127.0.0.1",
            port=port,
        )


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def observed_stack(workdir: Path, database_url: str, key_prefix: str) -> Any:
    """Start everything; yield an Observed; stop everything."""
    with ExitStack() as stack:
        standins = {
            "es": Standin("elasticsearch", workdir, "--gc-deletes-s", "1"),
            "embeddings": Standin("embeddings", workdir),
            "chatbot": Standin("chatbotmobile", workdir, "--token", CHATBOT_TOKEN),
        }
        for standin in standins.values():
            stack.callback(standin.stop)
            standin.start()
        ports = {name: free_port() for name in ("api", "es", "http", "scheduler", "celery")}
        api = f"http://127.0.0.1:{ports['api']}"
        env = {
            **os.environ,
            **TIMINGS,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "REDIS_KEY_PREFIX": key_prefix,
            "ELASTICSEARCH_URL": standins["es"].url,
            "ES_INDEX_PREFIX": f"{key_prefix.rstrip(':').replace(':', '-').lower()}-",
            "EMBEDDINGS_PROVIDER": "openai",
            "EMBEDDINGS_BASE_URL": f"{standins['embeddings'].url}/v1",
            "EMBEDDINGS_API_KEY": "obs-embeddings-key",
            "EMBEDDINGS_DIMENSIONS": "8",
            "CHATBOT_URL": standins["chatbot"].url,
            "CHATBOT_API_TOKEN": CHATBOT_TOKEN,
            "STORAGE_LOCAL_DIR": str(workdir / "uploads"),
            "PUBLIC_API_URL": api,
            "API_PORT": str(ports["api"]),
            "ES_WORKER_METRICS_PORT": str(ports["es"]),
            "HTTP_WORKER_METRICS_PORT": str(ports["http"]),
            "SCHEDULER_METRICS_PORT": str(ports["scheduler"]),
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        processes: list[Any] = [
            _Api(env, workdir / "api.log"),
            _CeleryExporter(env, workdir / "celery-exporter.log", ports["celery"]),
        ]
        workers = [
            Worker("services.es_worker", "es", workdir, env=env, include=""),
            Worker("services.http_worker", "http", workdir, env=env, include=""),
            Worker(
                "services.scheduler",
                "maintenance",
                workdir,
                env=env,
                concurrency=1,
                include="",
                beat=True,
            ),
        ]
        for process in [*processes, *workers]:
            stack.callback(process.stop)
        for process in processes:
            process.start()
        for worker in workers:
            worker.launch()
        targets = {
            monitoring.JOB_API: f"127.0.0.1:{ports['api']}",
            monitoring.JOB_ES_WORKER: f"127.0.0.1:{ports['es']}",
            monitoring.JOB_HTTP_WORKER: f"127.0.0.1:{ports['http']}",
            monitoring.JOB_SCHEDULER: f"127.0.0.1:{ports['scheduler']}",
            monitoring.JOB_CELERY_EXPORTER: f"127.0.0.1:{ports['celery']}",
        }
        webhook = stack.enter_context(Webhook())
        am = Alertmanager(alertmanager_config_for(webhook.url, workdir / "am.yaml"), workdir)
        stack.callback(am.stop)
        am.start()
        config = monitoring.prometheus_config(
            targets, alertmanager=f"127.0.0.1:{am.port}", interval_s=1
        )
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = Prometheus(workdir / "prometheus.yml", workdir / "prom")
        stack.callback(prometheus.stop)
        prometheus.start()
        for worker in workers:
            worker.wait_ready(60)
        wait_until(lambda: _answers(f"{api}/health/ready"), 30, what="the API")
        yield Observed(
            api, env, standins["es"], standins["chatbot"], prometheus, am, webhook, targets
        )
