"""Alerts reach the chart's receivers through the configuration prometheus-operator builds.

Two releases in two namespaces each ship their AlertmanagerConfig (rendered by Helm);
tests/monitoring/operator.py derives the Alertmanager configuration the operator writes from
them; every alert `promtool test rules` proves the rules raise (tests/monitoring/
rules_test.yaml, series labelled as the chart's scrape labels them) must reach its own
namespace's receiver in `amtool config routes test`, and a real Alertmanager running that
configuration holds back warnings only within the namespace of the critical alert.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.chart.chart import CHART, find, load_values, render
from tests.monitoring.operator import derived_config
from tests.support.monitoring import RULE_TESTS, Alertmanager, binary
from tests.support.procs import ROOT, wait_until

# The namespaces and releases of rules_test.yaml's series.
RELEASES = {"prod": "dw", "staging": "dw-staging"}


def _amconfig(namespace: str, release: str) -> dict[str, Any]:
    values = load_values(CHART / "ci/full-values.yaml")
    receivers = values["monitoring"]["alertmanagerConfig"]
    for severity in ("critical", "warning"):
        # Webhooks: the other receiver kinds read Secrets the operator would fetch.
        url = f"http://127.0.0.1:9/{namespace}/{severity}"
        receivers[severity] = {"webhookConfigs": [{"url": url}]}
    obj = find(render(values, release=release, namespace=namespace), "AlertmanagerConfig", "")
    body = dict(obj.body)
    body["metadata"] = {**body["metadata"], "namespace": namespace}
    return body


@pytest.fixture(scope="module")
def operator_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("operator") / "alertmanager.yaml"
    amconfigs = [_amconfig(ns, release) for ns, release in RELEASES.items()]
    path.write_text(yaml.safe_dump(derived_config(amconfigs)))
    checked = subprocess.run(
        [binary("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return path


def _receiver(config: Path, labels: dict[str, str]) -> str:
    routed = subprocess.run(
        [binary("amtool"), "config", "routes", "test", f"--config.file={config}"]
        + [f"{k}={v}" for k, v in sorted(labels.items())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert routed.returncode == 0, routed.stderr
    return routed.stdout.strip()


def raised_alerts() -> list[dict[str, str]]:
    """The label sets of every alert rules_test.yaml expects, once promtool agrees."""
    tested = subprocess.run(
        [binary("promtool"), "test", "rules", str(RULE_TESTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    found: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            for alert in case.get("exp_alerts") or []:
                labels = {"alertname": case["alertname"], **alert["exp_labels"]}
                found[tuple(sorted(labels.items()))] = labels
    return list(found.values())


def test_every_alert_the_rules_raise_reaches_its_own_namespaces_receiver(
    operator_config: Path,
) -> None:
    alerts = raised_alerts()
    names = {a["alertname"] for a in alerts}
    assert len(names) >= 10
    assert {a.get("namespace") for a in alerts} == set(RELEASES)
    for labels in alerts:
        namespace = labels["namespace"]
        owner = f"{namespace}/{RELEASES[namespace]}-durable-writes"
        assert _receiver(operator_config, labels) == f"{owner}/durable-{labels['severity']}", labels


def test_an_alert_without_its_namespace_reaches_no_receiver_of_ours(operator_config: Path) -> None:
    labels = {"alertname": "DurableTaskDeadLettered", "severity": "critical", "queue": "es"}
    assert _receiver(operator_config, labels) == "null"


def _post(am: Alertmanager, *label_sets: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body = [
        {
            "labels": labels,
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=5)).isoformat(),
        }
        for labels in label_sets
    ]
    httpx.post(f"{am.url}/api/v2/alerts", json=body, timeout=5, trust_env=False).raise_for_status()


def _states(am: Alertmanager) -> dict[tuple[str, str], str]:
    answer = httpx.get(f"{am.url}/api/v2/alerts", timeout=5, trust_env=False).json()
    return {
        (a["labels"]["alertname"], a["labels"]["namespace"]): a["status"]["state"] for a in answer
    }


def test_a_critical_holds_back_the_warnings_of_its_namespace_only(
    operator_config: Path, tmp_path: Path
) -> None:
    am = Alertmanager(operator_config, tmp_path)
    am.start()
    try:
        task = {"queue": "es", "task": "es_upsert_product"}
        _post(
            am,
            {"alertname": "DurableTaskDeadLettered", "severity": "critical", "namespace": "prod",
             "release": "dw", "reason": "permanent_error", **task},
            {"alertname": "DurableTaskFailureRatioHigh", "severity": "warning",
             "namespace": "prod", "release": "dw", **task},
            {"alertname": "DurableOutstandingTaskOld", "severity": "warning",
             "namespace": "staging", "release": "dw-staging", "queue": "es"},
        )  # fmt: skip
        expected = {
            ("DurableTaskDeadLettered", "prod"): "active",
            ("DurableTaskFailureRatioHigh", "prod"): "suppressed",
            # Same queue, other namespace: a production failure silences nothing in staging.
            ("DurableOutstandingTaskOld", "staging"): "active",
        }
        wait_until(lambda: _states(am) == expected, 10, what=f"alert states {expected}")
    finally:
        am.stop()
