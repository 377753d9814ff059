"""`make bench`: run the benchmarks, print a table, keep the results under var/bench/.

python -m tools.bench [--only backlog] [--backlog-n 100000] [--out var/bench]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from tools.bench.backlog import run_backlog
from tools.chaos.stack import ROOT


def _machine() -> dict[str, Any]:
    cpus = Path("/proc/cpuinfo").read_text().count("processor\t:")
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "cpus": cpus,
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def backlog(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The outage backlog, Elasticsearch writes and (a tenth as many) FAQ writes."""
    results = {}
    for kind, n in (("catalog", args.backlog_n), ("faq", max(args.backlog_n // 10, 500))):
        report = run_backlog(workdir / f"backlog-{kind}", kind, n).as_dict()
        results[kind] = report
    return results


BENCHMARKS = {"backlog": backlog}


def _table(results: dict[str, Any]) -> str:
    lines = []
    for kind, r in results.get("backlog", {}).items():
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
            f"  in Redis after accepting   {r['broker_messages_after_accepting']:>10} messages",
            f"  task log per waiting task  {r['bytes_per_waiting_task']:>10} bytes",
            f"  order violations           {r['order_violations']:>10}",
            f"  overlapping deliveries     {r['overlapping_writes']:>10}",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--backlog-n", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = args.out / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": _machine(), "started": stamp}
    for name in args.only or sorted(BENCHMARKS):
        results[name] = BENCHMARKS[name](args, workdir)
    path = args.out / f"results-{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    print(_table(results))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
