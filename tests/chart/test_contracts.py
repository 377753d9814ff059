"""The chart and the code agree: queues, Redis keys, ports, and the monitoring files.

Each contract is checked against the running code where it can be: the rendered worker
command is started as a real process, and the rendered listName is read from a real Redis.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core import processes, redisconn
from services.core.celery_app import celery_config
from services.core.config import Settings
from services.core.db import session_factory
from services.core.observability.worker import ProcessKind, metrics_port
from services.core.taskdefs import CANARY, Queue
from services.core.tasklog.repository import TaskLogRepository
from tests.chart.chart import (
    CHART,
    container,
    expand,
    find,
    load_values,
    merge,
    process_env,
    render,
    rendered,
    settings_from,
)
from tests.support.databases import own_database
from tests.support.flow import enqueuer, wait_finished
from tests.support.procs import ROOT, free_port
from tests.support.tlsredis import TlsRedis

WORKERS = {"es-worker": Queue.ES, "http-worker": Queue.HTTP}


def _arg(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


@pytest.mark.parametrize("name", ["minimal-values.yaml", "full-values.yaml"])
def test_each_scaledobject_watches_the_queue_its_worker_consumes(name: str) -> None:
    docs = rendered(name)
    prefix = load_values(CHART / "ci" / name).get("redis", {}).get("keyPrefix", "")
    watched = {}
    for scaled in (d for d in docs if d.kind == "ScaledObject"):
        target = find(docs, "Deployment", scaled.body["spec"]["scaleTargetRef"]["name"])
        command = container(target)["command"]
        (redis_trigger,) = [
            t for t in scaled.body["spec"]["triggers"] if t["type"].startswith("redis")
        ]
        (outstanding,) = [t for t in scaled.body["spec"]["triggers"] if t["type"] == "prometheus"]
        queue = _arg(command, "-Q")
        assert redis_trigger["metadata"]["listName"] == f"{prefix}{queue}"
        query = outstanding["metadata"]["query"]
        assert f'queue="{queue}"' in query
        # Work with a message or running, plus writes waiting for their fair-share turn.
        assert query.startswith('sum(durable_queue_outstanding_tasks{namespace="')
        assert 'held="false"' in query
        assert '+ sum(durable_customer_waiting_tasks{namespace="' in query
        assert query.count(f'queue="{queue}"') == 2
        watched[target.name.removeprefix("dw-durable-writes-")] = Queue(queue)
    assert watched == WORKERS
    # The scheduler consumes the maintenance queue and is never autoscaled.
    scheduler = container(find(docs, "Deployment", "-scheduler"))["command"]
    assert _arg(scheduler, "-Q") == Queue.MAINTENANCE.value and "--beat" in scheduler


def test_every_task_queue_has_a_deployment_that_consumes_it() -> None:
    docs = rendered("minimal-values.yaml")
    consumed = {
        _arg(container(d)["command"], "-Q")
        for d in docs
        if d.kind == "Deployment" and "-Q" in container(d)["command"]
    }
    assert consumed == {q.value for q in Queue}


def _local(env: dict[str, str], tmp: Path, database_url: str) -> dict[str, str]:
    """The rendered environment, with what only exists in a pod pointed at this machine."""
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if k.upper() not in Settings.model_fields or k in {"DATABASE_URL"}
        },
        **env,
        "ENVIRONMENT": "development",  # the cluster's secrets and addresses are not here
        "DATABASE_URL": database_url,  # from the Secret in a pod
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        "WORKER_HEARTBEAT_FILE": str(tmp / "worker.alive"),
        "STORAGE_LOCAL_DIR": str(tmp / "uploads"),
        "ELASTICSEARCH_URL": f"http://127.0.0.1:{free_port()}",
        "ES_WORKER_METRICS_PORT": "0",
        "HTTP_WORKER_METRICS_PORT": "0",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture(scope="module")
def chart_database() -> Iterator[str]:
    with own_database("chart") as url:
        yield url


@pytest.mark.parametrize("component", sorted(WORKERS))
def test_a_published_task_grows_the_watched_list_and_the_rendered_worker_drains_it(
    component: str, settings: Settings, chart_database: str, tmp_path: Path
) -> None:
    prefix = f"{settings.redis_key_prefix}chart-{component}:"
    redis = {"host": "127.0.0.1", "port": 6379, "db": 0, "auth": False, "keyPrefix": prefix}
    _drain(component, {"redis": redis}, {}, chart_database, tmp_path)


# Where the chart mounts the CA of redis.tls.caSecret.
REDIS_CA = "/etc/durable-writes/redis-ca/ca.crt"


def test_managed_redis_tls_and_acl_user_from_the_values_reach_a_real_worker(
    settings: Settings, chart_database: str, tmp_path: Path
) -> None:
    with TlsRedis(tmp_path / "redis", user="durable", password="pw-of-the-acl-user") as server:
        redis = {
            "host": "127.0.0.1",
            "port": server.port,
            "auth": True,
            "username": "durable",
            "keyPrefix": f"{settings.redis_key_prefix}chart-tls:",
            "tls": {"enabled": True, "caSecret": {"name": "redis-ca", "key": "ca.crt"}},
        }
        # What the kubelet does: the password from the Secret, the CA where it is mounted.
        kubelet = {"$(REDIS_PASSWORD)": server.password, REDIS_CA: str(server.ca)}
        rendered_url = _drain("es-worker", {"redis": redis}, kubelet, chart_database, tmp_path)
    assert rendered_url == (
        f"rediss://durable:$(REDIS_PASSWORD)@127.0.0.1:{server.port}/0"
        f"?ssl_cert_reqs=required&ssl_ca_certs={REDIS_CA}"
    )


def _drain(
    component: str,
    values: dict[str, Any],
    kubelet: dict[str, str],
    database: str,
    tmp_path: Path,
) -> str:
    """Publish a canary with the rendered settings, see it in the list KEDA watches, and let
    the rendered worker command run it; the rendered REDIS_URL."""
    docs = render(merge(load_values(CHART / "ci/minimal-values.yaml"), values))
    scaled = find(docs, "ScaledObject", component)
    list_name = next(t for t in scaled.body["spec"]["triggers"] if t["type"] == "redis")[
        "metadata"
    ]["listName"]
    deployment = find(docs, "Deployment", component)
    (tmp_path / "metrics").mkdir()
    env = _local(process_env(docs, deployment), tmp_path, database)
    rendered_url = env["REDIS_URL"]
    for placeholder, value in kubelet.items():
        env["REDIS_URL"] = env["REDIS_URL"].replace(placeholder, value)
    assert env["REDIS_KEY_PREFIX"] == values["redis"]["keyPrefix"]
    local = settings_from(env)
    redis = redisconn.connect(local.redis_url, None, timeout_s=5)
    before = redis.llen(list_name)
    accepted = enqueuer(local).enqueue(CANARY[WORKERS[component]].name, {})
    assert accepted.published
    assert redis.llen(list_name) == before + 1  # type: ignore[operator]

    command = [expand(a, env) for a in container(deployment)["command"]]
    assert command[0] == "python"
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, *command[1:]],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        row = wait_finished(TaskLogRepository(session_factory(database)), accepted.task_id, 60)
        assert row.status == "success", (tmp_path / "worker.log").read_text()[-3000:]
        assert redis.llen(list_name) == 0
        # The rendered liveness probe passes while the worker consumes.
        probe = container(deployment)["livenessProbe"]["exec"]["command"]
        live = subprocess.run(
            [sys.executable, *probe[1:]], env=env, capture_output=True, text=True, timeout=30
        )
        assert live.returncode == 0, live.stderr
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(60)
        log.close()
        leftovers = list(redis.scan_iter(match=f"{values['redis']['keyPrefix']}*"))
        if leftovers:
            redis.delete(*leftovers)
        redis.close()
    return rendered_url


def test_container_ports_are_the_ports_the_processes_read() -> None:
    values = load_values(CHART / "ci/full-values.yaml")
    # Not the defaults: a setting the process no longer reads would fall back to its default.
    values["ports"] = {
        "api": 18000,
        "flower": 15555,
        "esWorkerMetrics": 19401,
        "httpWorkerMetrics": 19402,
        "schedulerMetrics": 19403,
        "celeryExporter": 19808,
    }
    docs = render(values)

    def settings_of(suffix: str) -> tuple[Settings, dict[str, Any]]:
        deployment = find(docs, "Deployment", suffix)
        env = process_env(docs, deployment)
        settings = settings_from(env, environment="development", database_url="postgresql://db/x")
        return settings, container(deployment)

    def port(c: dict[str, Any], name: str) -> int:
        return int(next(p["containerPort"] for p in c["ports"] if p["name"] == name))

    api_settings, api = settings_of("-api")
    assert port(api, "http") == api_settings.api_port == 18000
    for suffix, kind in (
        ("-es-worker", ProcessKind.ES_WORKER),
        ("-http-worker", ProcessKind.HTTP_WORKER),
        ("-scheduler", ProcessKind.SCHEDULER),
    ):
        s, c = settings_of(suffix)
        assert port(c, "metrics") == metrics_port(s, kind) != 0, suffix
        assert s.metrics_host == "0.0.0.0"
    flower_settings, flower = settings_of("-flower")
    env = process_env(docs, find(docs, "Deployment", "-flower"))
    command = [expand(a, env) for a in flower["command"]]
    assert f"--port={flower_settings.flower_port}" in command
    assert port(flower, "flower") == flower_settings.flower_port == 15555
    exporter = container(find(docs, "Deployment", "-celery-exporter"))
    assert f"--port={port(exporter, 'metrics')}" in exporter["args"]


def test_a_sentinel_broker_is_one_the_settings_and_celery_take() -> None:
    values = load_values(CHART / "ci/full-values.yaml")
    sentinel = values["redis"]["sentinel"]
    assert sentinel["enabled"], "full-values.yaml is the file that turns Sentinel on"
    docs = render(values)
    for suffix in ("-api", "-es-worker", "-http-worker", "-scheduler", "-flower"):
        env = process_env(docs, find(docs, "Deployment", suffix))
        settings = settings_from(env, environment="development", database_url="postgresql://db/x")
        nodes = [f"{host}:{port}" for host, port in redisconn.sentinel_nodes(settings.redis_url)]
        assert nodes == sentinel["hosts"], suffix
        options = celery_config(settings)["broker_transport_options"]
        assert options["master_name"] == sentinel["masterName"], suffix


# Where the chart keeps the processes' state: /tmp is an emptyDir (read-only root).
CHART_STATE = {"scheduler": "/tmp/celerybeat-schedule", "flower": "/tmp/flower.db"}
CHART_CONCURRENCY = {"es-worker": "es", "http-worker": "http"}


def _probe(probe: processes.Probe | None) -> dict[str, Any] | None:
    """What a probe of the table looks like in a container (timings are the chart's)."""
    if probe is None:
        return None
    if probe.path:
        return {"httpGet": {"path": probe.path, "port": probe.port}}
    return {"exec": {"command": list(probe.command)}}


def _rendered_probe(c: dict[str, Any], kind: str) -> dict[str, Any] | None:
    rendered = c.get(f"{kind}Probe")
    if rendered is None:
        return None
    return {k: v for k, v in rendered.items() if k in {"httpGet", "exec"}}


@pytest.mark.parametrize("values_file", ["minimal-values.yaml", "full-values.yaml"])
@pytest.mark.parametrize("name", sorted(processes.PROCESSES))
def test_each_deployment_is_its_process_in_the_table(name: str, values_file: str) -> None:
    process = processes.PROCESSES[name]
    values = load_values(CHART / "ci" / values_file)
    docs = render(values)
    merged = load_values(CHART / "values.yaml")
    deployment = find(docs, "Deployment", f"-{name}")
    c = container(deployment)
    env = process_env(docs, deployment)
    settings = settings_from(env, environment="development", database_url="postgresql://db/x")

    concurrency = None
    if name in CHART_CONCURRENCY:
        key = CHART_CONCURRENCY[name]
        concurrency = values.get("workers", {}).get(key, {}).get("concurrency")
        # The chart's default pool is the table's.
        assert merged["workers"][key]["concurrency"] == process.concurrency
        concurrency = concurrency or process.concurrency
    expected = process.command(
        python="python",
        host="$(POD_NAME)",
        concurrency=concurrency,
        log_level="$(LOG_LEVEL)",
        state=CHART_STATE.get(name),
        address="$(FLOWER_HOST)",
        port="$(FLOWER_PORT)",
    )
    assert c["command"] == expected

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    assert ports == process.ports(settings)
    for kind in ("readiness", "liveness", "startup"):
        assert _rendered_probe(c, kind) == _probe(getattr(process, kind)), kind
    for key, value in process.env:
        assert env[key] == value
    grace = deployment.body["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    assert grace >= process.shutdown_timeout(settings)
    if process.shutdown_timeout_setting:
        assert grace > process.shutdown_timeout(settings) > 0


def test_celery_exporter_gets_the_options_of_the_table() -> None:
    values = load_values(CHART / "ci/full-values.yaml")
    docs = render(values)
    defaults = load_values(CHART / "values.yaml")
    assert defaults["ports"]["celeryExporter"] == processes.CELERY_EXPORTER.default_port
    merged = {**defaults["redis"], **values.get("redis", {})}
    deployment = find(docs, "Deployment", "-celery-exporter")
    c = container(deployment)
    expected = processes.celery_exporter_options(
        broker_url="$(REDIS_URL)",
        host="0.0.0.0",
        port=str(c["ports"][0]["containerPort"]),
        key_prefix=merged.get("keyPrefix", ""),
        tls=merged.get("tls", {}).get("enabled", False),
    )
    if merged.get("sentinel", {}).get("enabled"):
        sentinel = merged["sentinel"]["masterName"]
        expected += ["--broker-transport-option", f"master_name={sentinel}"]
    assert c["args"] == expected
    assert _rendered_probe(c, "liveness") == _probe(processes.CELERY_EXPORTER.liveness)


def test_the_prometheusrule_is_the_rules_file_promtool_tests() -> None:
    docs = rendered("full-values.yaml")
    rule = find(docs, "PrometheusRule", "")
    base = load_values(CHART / "ci/full-values.yaml")["monitoring"]
    text = (CHART / "files/prometheus/rules.yaml").read_text()
    served = f"runbook_url: {base['prometheusRule']['runbookBaseUrl']}/docs/runbook.md"
    assert rule.body["spec"] == yaml.safe_load(text.replace("runbook_url: docs/runbook.md", served))
    spec = yaml.safe_load((CHART / "files/alertmanager/spec.yaml").read_text())
    receivers = [
        {"name": f"durable-{severity}", **base["alertmanagerConfig"][severity]}
        for severity in ("critical", "warning")
    ]
    assert find(docs, "AlertmanagerConfig", "").body["spec"] == {**spec, "receivers": receivers}
    dashboards = {d.name: d.body for d in docs if d.kind == "ConfigMap" and "-dashboard-" in d.name}
    files = sorted((CHART / "files/dashboards").glob("*.json"))
    assert len(dashboards) == len(files) >= 1
    for path in files:
        body = dashboards[f"dw-durable-writes-dashboard-{path.stem}"]
        assert body["metadata"]["labels"]["grafana_dashboard"] == "1"
        shipped, generated = json.loads(body["data"][path.name]), json.loads(path.read_text())
        # The release's own uid, title and default scope; the rest as the generator wrote it.
        for board in (shipped, generated):
            board.pop("uid"), board.pop("title")
            for variable in board["templating"]["list"]:
                if variable["name"] in {"namespace", "release"}:
                    variable.pop("current")
        assert shipped == generated, path.name


def test_each_release_gets_its_own_dashboards_scoped_to_itself() -> None:
    values = load_values(CHART / "ci/full-values.yaml")

    def boards(release: str, namespace: str) -> dict[str, dict[str, Any]]:
        docs = render(values, release=release, namespace=namespace)
        found = {}
        for doc in docs:
            if doc.kind == "ConfigMap" and "-dashboard-" in doc.name:
                ((name, text),) = doc.body["data"].items()
                found[name] = json.loads(text)
        return found

    prod, staging = boards("dw", "prod"), boards("dw-staging", "staging")
    assert prod.keys() == staging.keys() and len(prod) == 5
    assert not {b["uid"] for b in prod.values()} & {b["uid"] for b in staging.values()}
    for board in staging.values():
        assert len(board["uid"]) <= 40  # Grafana's limit
        assert board["title"].endswith("(staging/dw-staging)")
        current = {
            v["name"]: v["current"]["value"]
            for v in board["templating"]["list"]
            if v["name"] in {"namespace", "release"}
        }
        assert current == {"namespace": "staging", "release": "dw-staging"}


@pytest.mark.parametrize("name", ["full-values.yaml", "production-values.yaml"])
def test_dashboards_read_only_series_the_release_exports(name: str) -> None:
    docs = rendered(name)
    runs_exporter = any(d.name.endswith("-celery-exporter") for d in docs if d.kind == "Deployment")
    for doc in docs:
        if doc.kind == "ConfigMap" and "-dashboard-" in doc.name:
            text = next(iter(doc.body["data"].values()))
            # celery_* series come from celery-exporter only (off by default).
            assert runs_exporter or "celery_" not in text, (name, doc.name)


def test_scrape_labels_are_the_ones_the_rules_dashboards_and_keda_select_by() -> None:
    for name, kind in (
        ("full-values.yaml", "PodMonitor"),
        ("production-values.yaml", "ServiceMonitor"),
    ):
        monitor = find(rendered(name), kind, "")
        endpoints = (
            monitor.body["spec"].get("podMetricsEndpoints") or monitor.body["spec"]["endpoints"]
        )
        for endpoint in endpoints:
            relabels = {r["targetLabel"]: r for r in endpoint["relabelings"]}
            assert relabels["job"]["replacement"] == "durable-$1"
            assert relabels["release"]["sourceLabels"] == [
                "__meta_kubernetes_pod_label_app_kubernetes_io_instance"
            ]
        # KEDA's outstanding-work query selects the labels this scrape gives the scheduler's
        # series: namespace (the operator's), release (the relabeling), the metric's own.
        for scaled in (d for d in rendered(name) if d.kind == "ScaledObject"):
            (trigger,) = [t for t in scaled.body["spec"]["triggers"] if t["type"] == "prometheus"]
            query = trigger["metadata"]["query"]
            assert 'namespace="durable"' in query and 'release="dw"' in query
            assert set(re.findall(r'(\w+)=~?"', query)) <= {
                "namespace", "release", "queue", "held", "job"
            }  # fmt: skip
    rules = (CHART / "files/prometheus/rules.yaml").read_text()
    assert 'up{job=~"durable-.+"}' in rules


def test_flower_starts_in_production_with_only_its_own_secret() -> None:
    docs = rendered("production-values.yaml")
    flower = find(docs, "Deployment", "-flower")
    env = process_env(docs, flower)
    assert env["PROCESS_ROLE"] == "flower" and "DATABASE_URL" not in env
    # What the kubelet adds from the Secret: the one key the pod is given.
    settings = settings_from(env, flower_basic_auth="ops:pw")
    assert settings.environment == "production" and settings.process_role == "flower"
    with pytest.raises(ValueError, match="DATABASE_URL"):
        settings.require("DATABASE_URL")
