"""The alert rules and the Alertmanager configuration, checked by Prometheus' own tools."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.monitoring import (
    ALERTMANAGER_CONFIG,
    RULE_TESTS,
    RULES,
    Alertmanager,
    alerts,
    binary,
)
from tests.support.procs import ROOT, wait_until
from tools.monitoring import ALERTMANAGERCONFIG_SPEC, render_alertmanagerconfig_spec

RUNBOOK = ROOT / "docs/runbook.md"
# What a PrometheusRule's spec accepts (the chart wraps the file in one as it is).
GROUP_KEYS = {"name", "interval", "rules", "limit", "partial_response_strategy"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rules_and_their_unit_tests_pass() -> None:
    promtool = binary("promtool")
    checked = _run(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    names = [rule["alert"] for rule in alerts()]
    assert len(names) >= 10
    assert {name: cases.get(name, set()) for name in names} == {n: {True, False} for n in names}


def test_every_alert_locates_its_problem_and_has_a_runbook_section() -> None:
    headings = set(re.findall(r"^## (\w+)$", RUNBOOK.read_text(), re.M))
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert notes["runbook_url"] == f"docs/runbook.md#{name.lower()}", name
        assert name in headings, f"docs/runbook.md has no section for {name}"
    assert headings == {rule["alert"] for rule in alerts()}


def test_the_rules_file_is_also_a_valid_prometheusrule_spec() -> None:
    spec = yaml.safe_load(RULES.read_text())
    assert set(spec) == {"groups"}
    for group in spec["groups"]:
        assert set(group) <= GROUP_KEYS, group["name"]
        for rule in group["rules"]:
            assert set(rule) <= RULE_KEYS, rule


def test_amtool_accepts_the_config_and_routes_by_severity() -> None:
    amtool = binary("amtool")
    checked = _run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    def receiver(*labels: str) -> str:
        routed = _run(
            amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels
        )
        assert routed.returncode == 0, routed.stderr
        return routed.stdout.strip()

    assert receiver("severity=critical", "queue=es") == "durable-critical"
    assert receiver("severity=warning", "queue=es") == "durable-warning"


def _post(am: Alertmanager, *label_sets: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body: list[dict[str, Any]] = [
        {
            "labels": labels,
            "annotations": {"summary": "test"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=5)).isoformat(),
        }
        for labels in label_sets
    ]
    httpx.post(f"{am.url}/api/v2/alerts", json=body, timeout=5, trust_env=False).raise_for_status()


def _states(am: Alertmanager) -> dict[str, str]:
    answer = httpx.get(f"{am.url}/api/v2/alerts", timeout=5, trust_env=False).json()
    return {a["labels"]["alertname"]: a["status"]["state"] for a in answer}


def test_a_critical_on_a_queue_holds_back_that_queues_warnings_only(tmp_path: Path) -> None:
    am = Alertmanager(ALERTMANAGER_CONFIG, tmp_path)
    am.start()
    try:
        _post(
            am,
            {"alertname": "DurableTaskDeadLettered", "severity": "critical", "queue": "es",
             "task": "es_upsert_product", "reason": "permanent_error"},
            {"alertname": "DurableTaskFailureRatioHigh", "severity": "warning", "queue": "es",
             "task": "es_upsert_product"},
            {"alertname": "RatioOtherTask", "severity": "warning", "queue": "es",
             "task": "es_delete_product"},
            {"alertname": "DurableReconcilerNotRunning", "severity": "critical"},
            {"alertname": "DurableBreakerOpen", "severity": "warning",
             "downstream": "elasticsearch"},
        )  # fmt: skip
        expected = {
            "DurableTaskDeadLettered": "active",
            "DurableTaskFailureRatioHigh": "suppressed",
            "RatioOtherTask": "active",
            "DurableReconcilerNotRunning": "active",
            # A critical without a queue silences nothing.
            "DurableBreakerOpen": "active",
        }
        wait_until(lambda: _states(am) == expected, 10, what=f"alert states {expected}")
    finally:
        am.stop()


@pytest.mark.parametrize("path", [RULES, RULE_TESTS, ALERTMANAGER_CONFIG])
def test_monitoring_files_carry_no_machine_paths(path: Path) -> None:
    assert "/work/" not in path.read_text() and "/tmp/" not in path.read_text()


def test_the_charts_alertmanagerconfig_is_generated_from_the_example() -> None:
    assert ALERTMANAGERCONFIG_SPEC.read_text() == render_alertmanagerconfig_spec(), (
        "run `make dashboards` and commit the result"
    )
    spec = yaml.safe_load(ALERTMANAGERCONFIG_SPEC.read_text())
    example = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    # The chart names its two receivers (from values) as the example does.
    assert [r["name"] for r in example["receivers"]] == ["durable-critical", "durable-warning"]
    assert "receivers" not in spec
    critical = spec["route"]["routes"][0]
    assert critical["matchers"] == [{"name": "severity", "value": "critical", "matchType": "="}]
    assert critical["receiver"] == "durable-critical"
    assert spec["inhibitRules"][0]["equal"] == ["queue", "task"]
