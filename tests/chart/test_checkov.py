"""checkov's scan of the rendered chart (tools/chartscan.py, run by `make lint` over every
ci values file): it does flag what it must, and the accepted checks stay justified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tools.chartscan import CHART, ROOT, SKIPS, Failure, judge, scan

CHECKOV = ROOT / ".venv-checkov/bin/checkov"


def test_every_accepted_check_says_why_and_where() -> None:
    skips = yaml.safe_load(SKIPS.read_text())
    assert skips, "the scan accepts nothing? then delete the file"
    files = {p.name for p in (CHART / "ci").glob("*-values.yaml")}
    for check, entry in skips.items():
        assert len(str(entry["why"]).split()) >= 20, check
        assert set(entry.get("values", files)) <= files, check


def test_judge_refuses_unaccepted_failures_and_stale_entries() -> None:
    skips: dict[str, dict[str, Any]] = {
        "CKV_A": {"why": "reason", "values": ["minimal-values.yaml"]},
        "CKV_STALE": {"why": "reason"},
    }
    failures = [
        Failure("CKV_A", "minimal-values.yaml", "Deployment.durable.x"),
        Failure("CKV_A", "full-values.yaml", "Deployment.durable.x"),
        Failure("CKV_NEW", "minimal-values.yaml", "Pod.durable.y"),
    ]
    problems = judge(failures, skips)
    assert len(problems) == 3, problems
    assert any("CKV_A on Deployment.durable.x (full-values.yaml)" in p for p in problems)
    assert any(p.startswith("CKV_NEW") for p in problems)
    assert any("CKV_STALE" in p and "no longer fails" in p for p in problems)


def test_checkov_flags_the_chart_made_privileged(tmp_path: Path) -> None:
    values = yaml.safe_load((CHART / "ci/minimal-values.yaml").read_text())
    values["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": True}
    bad = tmp_path / "values" / "privileged-values.yaml"
    bad.parent.mkdir()
    bad.write_text(yaml.safe_dump(values))
    (tmp_path / "out").mkdir()
    failures = scan(CHECKOV, [bad], tmp_path / "out")
    flagged = {f.check for f in failures}
    assert {"CKV_K8S_16", "CKV_K8S_20"} <= flagged  # privileged, privilege escalation
    skips = yaml.safe_load(SKIPS.read_text())
    assert any("CKV_K8S_16" in p for p in judge(failures, skips))
