"""The CI-sized form of `make bench`, so the benchmarks never rot.

It runs the benchmark command as `make bench` does, with tiny counts, and checks that every
figure was measured and every request and task succeeded. Nothing here is about speed: the
figures are printed, and the benchmark run is where they are judged (README, "Performance").
The outage backlog has its own CI-sized test (test_outage_backlog.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.bench.__main__ import CI
from tools.chaos.stack import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _bench(out: Path, *benchmarks: str) -> dict[str, Any]:
    """Run `make bench`'s command in its CI-sized form; the results it wrote."""
    only = [arg for name in benchmarks for arg in ("--only", name)]
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--ci", *only, "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "ENVIRONMENT": "development"},
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(done.stdout)
    [path] = out.glob("results-*.json")
    results: dict[str, Any] = json.loads(path.read_text())
    return results


def test_the_benchmarks_run_and_measure_every_figure(tmp_path: Path) -> None:
    results = _bench(tmp_path, "enqueue", "pipeline", "tasklog-scale")
    assert list(tmp_path.glob("enqueue-*.png")), "no plot"

    # Enqueue: every write, target and concurrency measured, no request failed (wrk counts
    # any answer other than 2xx/3xx as an error), and the ES-down run too.
    for write in ("upsert", "faq"):
        for target in ("bare", "bare+celery", "project"):
            for c in CI.concurrencies:
                run = results["enqueue"][write][target][str(c)]
                assert run["requests"] > 0 and run["errors"] == 0, (write, target, run)
    for c in CI.concurrencies:
        down = results["enqueue"]["upsert"]["project, ES down"][str(c)]
        assert down["requests"] > 0 and down["errors"] == 0, down
    assert all(mib > 0 for mib in results["enqueue"]["memory_mib"].values())

    # Pipeline: every task of every round finished, and worker memory was read.
    pipeline = results["pipeline"]
    for name in ("tracked no-op", "bare no-op", "tracked upsert", "bare upsert"):
        assert pipeline[name]["tasks"] == CI.pipeline_n, (name, pipeline[name])
        assert pipeline[name]["worker_rss_mib"] > 0
    assert pipeline["bulk upsert"]["tasks"] >= 2 and pipeline["bulk upsert"]["documents_per_s"]

    # Task-log scale: each size filled and both reads answered.
    scale = results["tasklog-scale"]
    assert [scale[str(n)]["rows"] for n in CI.log_sizes] == list(CI.log_sizes)
    for n in CI.log_sizes:
        assert scale[str(n)]["bytes_per_row"] > 0
        assert scale[str(n)]["status"]["requests"] > 0
        assert scale[str(n)]["my_tasks"]["requests"] > 0


@pytest.mark.skipif(
    not os.environ.get("BENCH_FAIRNESS"),
    reason="opt-in, about 90 s of two stacks: BENCH_FAIRNESS=1 (README, Tests)",
)
def test_the_fairness_benchmark_runs_and_measures_every_round(tmp_path: Path) -> None:
    fairness = _bench(tmp_path, "fairness")["fairness"]
    # Every round measured, every write of every customer succeeded.
    assert fairness["others alone"]["writes"] > 0 and fairness["others alone"]["failed"] == 0
    for fair in ("on", "off"):
        alone = fairness[f"A alone, fair share {fair}"]
        both = fairness[f"A with B..E, fair share {fair}"]
        assert alone["failed"] == both["import"]["failed"] == both["others"]["failed"] == 0
        for figures in (alone, both["import"]):
            assert figures["es"]["documents"] and figures["http"]["documents"]
        assert both["others"]["writes"] > 0
    assert fairness["verdict"]["others_p99_ratio"] is not None
