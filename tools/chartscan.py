"""checkov over the chart as Helm applies it, for `make lint`.

Every `charts/durable-writes/ci/*-values.yaml` is rendered by Helm's engine (hooks and the
test pod included, each object in the release's namespace, as `helm install -n` puts it) and
scanned by checkov's Kubernetes checks. Each failing check must be accepted, with its reason,
in `charts/durable-writes/checkov-skips.yaml`, the one place that says why; an entry that no
longer covers a failure is stale and fails the scan too.

    python -m tools.chartscan [--checkov .venv-checkov/bin/checkov]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts/durable-writes"
SKIPS = CHART / "checkov-skips.yaml"
RELEASE, NAMESPACE = "dw", "durable"


@dataclass(frozen=True)
class Failure:
    """One failed check on one rendered object."""

    check: str
    values: str  # the ci values file it was rendered from
    resource: str

    def __str__(self) -> str:
        return f"{self.check} on {self.resource} ({self.values})"


def render(values_file: Path) -> list[dict[str, Any]]:
    """The objects of one values file, each in the release's namespace."""
    import helm_python

    helm_python.disable_logging()
    values = yaml.safe_load(values_file.read_text()) or {}
    manifests = helm_python.Chart.load(CHART).render(
        values, name=RELEASE, namespace=NAMESPACE, is_install=True
    )
    docs = []
    for template, text in sorted(manifests.items()):
        if template.endswith(".yaml"):
            for body in yaml.safe_load_all(text):
                if body:
                    body["metadata"].setdefault("namespace", NAMESPACE)
                    docs.append(body)
    return docs


def scan(checkov: Path, values_files: list[Path], workdir: Path) -> list[Failure]:
    """Every check that fails on the rendered chart."""
    for path in values_files:
        (workdir / path.name).write_text(yaml.safe_dump_all(render(path)))
    answer = subprocess.run(
        [str(checkov), "--directory", str(workdir), "--framework", "kubernetes",
         "--output", "json", "--quiet", "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if answer.returncode not in (0, 1):  # 1: some check failed
        raise RuntimeError(f"checkov failed to run: {answer.stderr[-3000:]}")
    reports = json.loads(answer.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failures = []
    for report in reports:
        for failed in report.get("results", {}).get("failed_checks", []):
            values = Path(failed["file_path"]).name
            failures.append(Failure(failed["check_id"], values, failed["resource"]))
    return failures


def judge(failures: list[Failure], skips: dict[str, dict[str, Any]]) -> list[str]:
    """What is wrong: failures no entry accepts, and entries that accept nothing."""
    problems = []
    used: set[str] = set()
    for failure in failures:
        entry = skips.get(failure.check)
        if entry is None or failure.values not in entry.get("values", [failure.values]):
            problems.append(f"{failure}: fix it, or accept it in {SKIPS.relative_to(ROOT)}")
        else:
            used.add(failure.check)
    for check, entry in skips.items():
        if not str(entry.get("why", "")).strip():
            problems.append(f"{check}: an accepted check needs its reason (why)")
        if check not in used:
            problems.append(f"{check}: accepted in {SKIPS.name} but no longer fails: remove it")
    return problems


def main(argv: list[str]) -> int:
    """Scan; print what is wrong; exit 1 if anything is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkov", type=Path, default=ROOT / ".venv-checkov/bin/checkov")
    args = parser.parse_args(argv)
    if not args.checkov.exists():
        print(f"{args.checkov} is missing: run `make checkov`", file=sys.stderr)
        return 2
    values_files = sorted((CHART / "ci").glob("*-values.yaml"))
    with tempfile.TemporaryDirectory() as workdir:
        failures = scan(args.checkov, values_files, Path(workdir))
    skips: dict[str, dict[str, Any]] = yaml.safe_load(SKIPS.read_text()) or {}
    problems = judge(failures, skips)
    for problem in problems:
        print(problem, file=sys.stderr)
    checks = len({f.check for f in failures})
    print(
        f"chartscan: {len(values_files)} values files, {len(failures)} accepted failures of "
        f"{checks} checks, {len(problems)} problems"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
