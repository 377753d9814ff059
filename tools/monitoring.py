"""Local monitoring glue: celery-exporter's command line and a Prometheus config for our jobs.

Used by `make up` (tools/devstack.py) and by the end-to-end monitoring test, so that both
run celery-exporter and name the scrape jobs the same way the alert rules expect
(`durable-<process>`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.core import processes

ROOT = Path(__file__).resolve().parents[1]
CELERY_EXPORTER_VENV = ROOT / ".venv-celery-exporter"
CELERY_EXPORTER_PORT = processes.CELERY_EXPORTER.default_port
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
    """celery-exporter against our broker, with the process table's options."""
    # The package installs its CLI as a module named `src`, without a console script.
    entry = [str(python), "-c", "from src.cli import cli; cli()"]
    return entry + processes.celery_exporter_options(
        broker_url=redis_url, host=host, port=port, key_prefix=key_prefix
    )


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


# AlertmanagerConfig (monitoring.coreos.com/v1alpha1) spelling of the example configuration's
# route, receivers and inhibition, for the chart: generated, never edited by hand.
ALERTMANAGER_EXAMPLE = ROOT / "k8s/monitoring/alertmanager.yaml"
ALERTMANAGERCONFIG_SPEC = ROOT / "charts/durable-writes/files/alertmanager/spec.yaml"
_ROUTE_KEYS = {
    "receiver": "receiver",
    "group_by": "groupBy",
    "group_wait": "groupWait",
    "group_interval": "groupInterval",
    "repeat_interval": "repeatInterval",
    "continue": "continue",
}


def _matcher(text: str) -> dict[str, str]:
    # 'name="value"', 'name=~"regex"', 'name!="value"', 'name!~"regex"'
    for op in ("=~", "!~", "!=", "="):
        if op in text:
            name, value = text.split(op, 1)
            return {"name": name.strip(), "value": value.strip().strip('"'), "matchType": op}
    raise ValueError(f"not a matcher: {text!r}")


def _route(route: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {new: route[old] for old, new in _ROUTE_KEYS.items() if old in route}
    if "matchers" in route:
        spec["matchers"] = [_matcher(m) for m in route["matchers"]]
    if "routes" in route:
        spec["routes"] = [_route(child) for child in route["routes"]]
    return spec


def alertmanagerconfig_spec(config: dict[str, Any]) -> dict[str, Any]:
    """The routes and inhibition of an AlertmanagerConfig `spec` with the same routing as an
    Alertmanager config; the chart adds the receivers from its values."""
    inhibit = [
        {
            "sourceMatch": [_matcher(m) for m in rule["source_matchers"]],
            "targetMatch": [_matcher(m) for m in rule["target_matchers"]],
            "equal": rule.get("equal", []),
        }
        for rule in config.get("inhibit_rules", [])
    ]
    return {"route": _route(config["route"]), "inhibitRules": inhibit}


def render_alertmanagerconfig_spec() -> str:
    """The text of the chart's AlertmanagerConfig spec, from the example configuration."""
    import yaml

    spec = alertmanagerconfig_spec(yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text()))
    header = (
        "# Generated from k8s/monitoring/alertmanager.yaml by `make dashboards`\n"
        "# (python -m tools.monitoring); do not edit. The chart's optional AlertmanagerConfig\n"
        "# (monitoring.coreos.com/v1alpha1) uses it as its spec, with the receivers\n"
        "# durable-critical and durable-warning from the values (monitoring.alertmanagerConfig).\n"
    )
    body: str = yaml.safe_dump(spec, sort_keys=False)
    return header + body


if __name__ == "__main__":
    ALERTMANAGERCONFIG_SPEC.parent.mkdir(parents=True, exist_ok=True)
    ALERTMANAGERCONFIG_SPEC.write_text(render_alertmanagerconfig_spec())
    print(f"wrote {ALERTMANAGERCONFIG_SPEC.relative_to(ROOT)}")
