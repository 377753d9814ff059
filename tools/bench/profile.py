"""Where the time goes: py-spy samples of a process under load, summed by function.

    python -m tools.bench.profile api [--seconds 15] [--connections 32]
    python -m tools.bench.profile es-worker [--tasks 3000]

`api` drives the project's API with wrk (catalog upserts) while py-spy samples it; `es-worker`
samples a worker draining tracked upserts. Prints the share of samples in which each of the
hottest functions was on the stack (inclusive), which is what guided the speed work (README,
"Performance"). Needs py-spy (`pip install py-spy`) and wrk.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from tools.bench.enqueue import UPSERT, _script
from tools.bench.harness import BenchStack, wrk
from tools.bench.pipeline import accept_canaries, accept_upserts


def _sample(pid: int, seconds: float, out: Path, gil: bool = False, idle: bool = False) -> None:
    subprocess.run(
        [
            str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
            "--duration", str(round(seconds)), "--format", "raw", "--output", str(out),
            "--subprocesses", "--nonblocking",
            *(["--gil"] if gil else []), *(["--idle"] if idle else []),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


def self_time(raw: Path, top: int = 25) -> list[tuple[float, str]]:
    """(share, function) of the innermost frames: where the samples were spent."""
    leaves: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            leaves[stack.split(";")[-1].strip()] += int(count)
    total = sum(leaves.values()) or 1
    return [(round(100 * n / total, 1), f) for f, n in leaves.most_common(top)]


def summarize(raw: Path, marker: str, top: int = 40) -> list[tuple[float, str]]:
    """(share, function) of the functions most often on the stack, among the samples whose
    stack holds `marker` (the request or task being served), leaving out the frames every one
    of them shares."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or marker not in stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        inside = frames[max(i for i, f in enumerate(frames) if marker in f) :]
        for frame in {f.split(" (")[0].strip() for f in inside}:
            inclusive[frame] += n
    ranked = [(round(100 * n / total, 1), f) for f, n in inclusive.most_common() if n < total]
    return ranked[:top]


def main(argv: list[str]) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench.profile")
    parser.add_argument("target", choices=["api", "es-worker", "es-worker-noop"])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--marker", action="append", help="frames to look inside (repeatable)")
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (CPU view)"
    )
    parser.add_argument(
        "--idle", action="store_true", help="keep samples of waiting threads (wall-clock view)"
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="durable-profile-"))
    bench = BenchStack(workdir, {"es-worker": ("services.es_worker", "es")}, "profile")
    raw = workdir / "profile.txt"
    try:
        bench.start({"redis", "es-standin", "embeddings-standin", "chatbot-standin", "api"})
        if args.target == "api":
            script = _script(workdir, "upsert", UPSERT, bench.token())
            url = f"http://127.0.0.1:{bench.env['API_PORT']}"
            wrk(url, script, args.connections, 3)  # warm up
            sampler = threading.Thread(
                target=_sample, args=(bench.pid("api"), args.seconds, raw, args.gil, args.idle)
            )
            sampler.start()
            got = wrk(url, script, args.connections, args.seconds)
            sampler.join()
            print(f"{got.per_s} writes/s, p99 {got.p99_ms} ms")
        else:
            if args.target == "es-worker-noop":
                accept_canaries(bench.settings, args.tasks)
            else:
                accept_upserts(bench.settings, args.tasks)
            bench.start({"es-worker"})
            time.sleep(3)
            _sample(bench.pid("es-worker"), args.seconds, raw, args.gil, args.idle)
    finally:
        bench.stop()
    default = (
        ["request_response", "Enqueuer.enqueue"] if args.target == "api" else ["TaskRunner.run"]
    )
    print("-- innermost frames (self time)")
    for share, function in self_time(raw):
        print(f"{share:>6} %  {function}")
    for marker in args.marker or default:
        print(f"-- inside {marker}")
        for share, function in summarize(raw, marker):
            print(f"{share:>6} %  {function}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
