"""Local monitoring glue: celery-exporter's command line and a Prometheus config for our jobs.

Used by `make up` (tools/devstack.py) and by the end-to-end monitoring test, so that both
run celery-exporter and name the scrape jobs the same way the alert rules expect
(`durable-<process>`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CELERY_EXPORTER_VENV = ROOT / ".venv-celery-exporter"
CELERY_EXPORTER_PORT = 9808  # its own default
RULES = ROOT / "charts/durable-writes/files/prometheus/rules.yaml"

# Scrape job of each process kind (the rules' DurableScrapeTargetDown matches durable-.+).
JOB_API = "durable-api"
JOB_ES_WORKER = "durable-es-worker"
JOB_HTTP_WORKER = "durable-http-worker"
JOB_SCHEDULER = "durable-scheduler"
JOB_CELERY_EXPORTER = "durable-celery-exporter"


def celery_exporter_python() -> Path | None:
    """The interpreter of celery-exporter's virtualenv (`make celery-exporter`), if built."""
    python = CELERY_EXPORTER_VENV / "bin" / "python"
    return python if python.exists() else None


def celery_exporter_command(
    python: Path, *, redis_url: str, key_prefix: str, host: str, port: int
) -> list[str]:
    """celery-exporter against our broker, as it is (only options of its own)."""
    args = [
        str(python),
        "-c",
        # The package installs its CLI as a module named `src`, without a console script.
        "from src.cli import cli; cli()",
        "--broker-url",
        redis_url,
        "--host",
        host,
        "--port",
        str(port),
        "--accept-content",
        "json",
        # Keep running through a broker restart instead of exiting.
        "--retry-interval",
        "5",
        # The hostname of whoever published a task (an API pod) is no label worth having.
        "--generic-hostname-task-sent-metric",
        "-Q",
        "es,http,maintenance",
    ]
    if key_prefix:
        # Our queues and events live under REDIS_KEY_PREFIX (kombu's global_keyprefix).
        args += ["--broker-transport-option", f"global_keyprefix={key_prefix}"]
    return args


def prometheus_config(
    targets: dict[str, str],
    *,
    alertmanager: str | None = None,
    interval_s: float = 15,
    rules: Path = RULES,
) -> dict[str, Any]:
    """A Prometheus configuration scraping `targets` (job -> host:port), with our rules."""
    interval = f"{interval_s:g}s"
    # celery-exporter asks the workers (inspect, 1 s timeouts) while it is scraped.
    slow = f"{max(interval_s, 5):g}s"
    jobs = []
    for job, address in targets.items():
        scrape: dict[str, Any] = {"job_name": job, "static_configs": [{"targets": [address]}]}
        if job == JOB_CELERY_EXPORTER:
            scrape.update(scrape_interval=slow, scrape_timeout=slow)
        jobs.append(scrape)
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": jobs,
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config
