"""`make bench`: run the benchmarks, print a table, keep results (JSON) and a plot (PNG).

python -m tools.bench [--only enqueue --only pipeline ...] [--ci] [--backlog-n 10000]
                      [--out var/bench]

Each benchmark starts a stack of its own (private redis-server, a fresh PostgreSQL task log,
the stand-ins, the project's processes and the bare baselines). `--ci` is the CI-sized form
(`make test` runs it so the benchmark never rots): seconds and tiny counts, figures printed,
nothing asserted about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.bench import enqueue, fairness, pipeline, tasklog_scale
from tools.bench.backlog import run_backlog
from tools.chaos.stack import ROOT


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs."""

    concurrencies: tuple[int, ...]
    wrk_seconds: float
    pipeline_n: int
    backlog_n: int
    log_sizes: tuple[int, ...]
    fairness: fairness.Sizes


FULL = Sizes((1, 8, 32, 64), 10, 2000, 10_000, (10_000, 100_000, 1_000_000), fairness.FULL)
CI = Sizes((4,), 1, 40, 300, (500, 2000), fairness.CI)


def _machine() -> dict[str, Any]:
    cpus = os.cpu_count() or 0
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return {
        "cpus": cpus,
        "cpu": model,
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def run_enqueue(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    return enqueue.run_enqueue(workdir / "enqueue", sizes.concurrencies, sizes.wrk_seconds)


def run_pipeline(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    return pipeline.run_pipeline(workdir / "pipeline", sizes.pipeline_n)


def run_backlogs(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """The outage backlog: Elasticsearch writes and (a tenth as many) FAQ writes."""
    results = {}
    for kind, n in (("catalog", sizes.backlog_n), ("faq", max(sizes.backlog_n // 10, 100))):
        report = run_backlog(workdir / f"backlog-{kind}", kind, n).as_dict()
        report.pop("samples", None)
        results[kind] = report
    return results


def run_scale(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    return tasklog_scale.run_tasklog_scale(workdir / "scale", sizes.log_sizes, sizes.wrk_seconds)


def run_fairness(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    return fairness.run_fairness(workdir / "fairness", sizes.fairness)


BENCHMARKS = {
    "enqueue": run_enqueue,
    "pipeline": run_pipeline,
    "backlog": run_backlogs,
    "tasklog-scale": run_scale,
    "fairness": run_fairness,
}


def _backlog_table(results: dict[str, Any]) -> str:
    lines = []
    for kind, r in results.items():
        lines += [
            f"backlog {kind}: {r['n']} writes accepted while the downstream was down",
            f"  pipeline (downstream up)   {r['pipeline_per_s']:>10} writes/s",
            f"  drain after the outage     {r['drain_per_s']:>10} writes/s"
            f"   ratio {r['drain_ratio']}",
            f"  worker RSS idle / peak     {r['worker_rss_idle_mib']:>10} / "
            f"{r['worker_rss_peak_mib']} MiB",
            f"  Redis used idle / peak     {r['redis_used_idle_mib']:>10} / "
            f"{r['redis_used_peak_mib']} MiB",
            f"  waiting in the log (peak)  {r['held_peak']:>10}",
            f"  task log per waiting task  {r['bytes_per_waiting_task']:>10} bytes",
            f"  order violations           {r['order_violations']:>10}",
            f"  overlapping deliveries     {r['overlapping_writes']:>10}",
        ]
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    """Every benchmark's table."""
    parts = []
    if "enqueue" in results:
        parts.append("enqueue (requests/s; ratios: project against bare FastAPI + Celery)")
        parts.append(enqueue.summary(results["enqueue"]))
        memory = results["enqueue"]["memory_mib"]
        parts.append(f"API RSS MiB: {json.dumps(memory)}")
    if "pipeline" in results:
        parts.append("pipeline (same worker concurrency; ratio: tracked against bare Celery)")
        parts.append(pipeline.summary(results["pipeline"]))
    if "backlog" in results:
        parts.append(_backlog_table(results["backlog"]))
    if "tasklog-scale" in results:
        parts.append("task log scale (status and my-tasks through the API)")
        parts.append(tasklog_scale.summary(results["tasklog-scale"]))
    if "fairness" in results:
        parts.append("fair share (customer A's import against B..E's single writes)")
        parts.append(fairness.summary(results["fairness"]))
    return "\n\n".join(parts)


def plot(results: dict[str, Any], path: Path) -> Path | None:
    """Throughput and p99 against concurrency, project against the baselines (PNG)."""
    if "enqueue" not in results:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    writes = ("upsert", "faq")
    figure, axes = pyplot.subplots(2, len(writes), figsize=(11, 7), squeeze=False)
    for column, write in enumerate(writes):
        for target, runs in results["enqueue"][write].items():
            levels = sorted(runs, key=int)
            x = [int(c) for c in levels]
            axes[0][column].plot(x, [runs[c]["per_s"] for c in levels], marker="o", label=target)
            axes[1][column].plot(x, [runs[c]["p99_ms"] for c in levels], marker="o", label=target)
        axes[0][column].set_title(f"{write}: throughput")
        axes[0][column].set_ylabel("requests/s")
        axes[1][column].set_title(f"{write}: p99 latency")
        axes[1][column].set_ylabel("ms")
        for row in (0, 1):
            axes[row][column].set_xlabel("concurrent connections")
            axes[row][column].set_xscale("log", base=2)
            axes[row][column].legend(fontsize=8)
            axes[row][column].grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    pyplot.close(figure)
    return path


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--ci", action="store_true", help="the CI-sized form: tiny counts")
    parser.add_argument("--backlog-n", type=int, help="writes of the catalog backlog")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args(argv)
    sizes = CI if args.ci else FULL
    if args.backlog_n:
        sizes = Sizes(**{**sizes.__dict__, "backlog_n": args.backlog_n})
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = args.out / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": _machine(),
        "started": stamp,
        "sizes": {**sizes.__dict__, "fairness": sizes.fairness.__dict__},
    }
    for name in args.only or list(BENCHMARKS):
        results[name] = BENCHMARKS[name](sizes, workdir)
    path = args.out / f"results-{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    print(report(results))
    print(f"\nresults: {path}")
    picture = plot(results, args.out / f"enqueue-{stamp}.png")
    if picture is not None:
        print(f"plot: {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
