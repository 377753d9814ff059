"""Command line of the chaos suite; see the package docstring."""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# The settings fail closed; the chaos stack is a development stack (set before they load).
os.environ.setdefault("ENVIRONMENT", "development")

import httpx
from sqlalchemy import select

from services.core.auth import issue_token
from services.core.config import get_settings
from services.core.db import session_factory
from services.core.tasklog.models import TaskLog
from tools.chaos.expect import Verdict, check_catalog, check_chatbot
from tools.chaos.faults import Injector, schedule
from tools.chaos.load import Load
from tools.chaos.stack import ROOT, Stack, create_database, drop_database, wait_until

RATE_PER_S = 6.0


def say(text: str) -> None:
    print(f"chaos | {text}", flush=True)


@dataclass
class LogTally:
    """The task log's view of the accepted tasks."""

    rows: int = 0
    success: int = 0
    failed: int = 0
    unfinished: int = 0
    max_delay_s: float = 0.0
    failures: list[str] | None = None


def tally(database_url: str, task_ids: list[str]) -> LogTally:
    """Statuses and delays of the accepted tasks."""
    sessions = session_factory(database_url)
    found: dict[str, tuple[str, datetime, datetime | None, str | None]] = {}
    with sessions() as session:
        for start in range(0, len(task_ids), 500):
            chunk = task_ids[start : start + 500]
            stmt = select(
                TaskLog.task_id,
                TaskLog.status,
                TaskLog.created_at,
                TaskLog.finished_at,
                TaskLog.error_message,
            ).where(TaskLog.task_id.in_(chunk))
            for task_id, status, created, finished, error in session.execute(stmt):
                found[task_id] = (status, created, finished, error)
    result = LogTally(rows=len(found), failures=[])
    for task_id, (status, created, finished, error) in found.items():
        if status == "success":
            result.success += 1
        elif status == "failed":
            result.failed += 1
            assert result.failures is not None
            result.failures.append(f"{task_id}: {error}")
        else:
            result.unfinished += 1
        if finished is not None:
            result.max_delay_s = max(result.max_delay_s, (finished - created).total_seconds())
    return result


def run(duration_s: float, seed: int, settle_s: float, workdir: Path, keep: bool) -> int:
    say(f"seed={seed} duration={duration_s:g}s workdir={workdir}")
    workdir.mkdir(parents=True, exist_ok=True)
    db_name = f"durable_chaos_{os.getpid()}"
    database_url = create_database(db_name)
    stack = Stack(workdir, database_url)
    stack.build()
    try:
        stack.start()
        say("stack up: " + ", ".join(stack.procs))
        status, summary = _drive(stack, duration_s, seed, settle_s)
    finally:
        stack.stop()
        if not keep:
            drop_database(db_name)
        say(f"process logs are in {workdir}")
    print(summary, flush=True)  # last, so that a caller can read it from the end
    return status


def _drive(stack: Stack, duration_s: float, seed: int, settle_s: float) -> tuple[int, str]:
    settings = get_settings()
    token = issue_token(settings, user_id="chaos", customer_id=None, roles=["service"])
    api = httpx.Client(
        base_url=stack.api_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
        trust_env=False,
    )
    load = Load(api, random.Random(seed))
    faults = schedule(random.Random(f"faults-{seed}"), duration_s, stack.workers)
    for fault in faults:
        say(f"planned {fault.describe()}")
    injector = Injector(stack, faults, say)
    origin = time.monotonic()
    injector.start(origin)

    sent = 0
    last_advance = 0.0
    while (elapsed := time.monotonic() - origin) < duration_s:
        load.one()
        sent += 1
        if elapsed - last_advance >= 1.0:
            load.advance()
            last_advance = elapsed
        time.sleep(max(0.0, origin + sent / RATE_PER_S - time.monotonic()))
    say(f"load over: {len(load.accepted)} accepted in {time.monotonic() - origin:.0f} s")
    load.finish()
    if not injector.wait(300):
        say("a fault did not end within 300 s")

    settle_deadline = time.monotonic() + settle_s
    while load.pending and time.monotonic() < settle_deadline:
        load.advance()
        time.sleep(0.5)
    task_ids = [a.task_id for a in load.accepted]

    def settled() -> bool:
        counts = tally(stack.database_url, task_ids)
        return counts.rows == len(task_ids) and counts.unfinished == 0

    try:
        wait_until(
            settled, max(1.0, settle_deadline - time.monotonic()), what="every task to finish"
        )
    except TimeoutError:
        say(f"not settled after {settle_s:g} s")
    say(f"settled {time.monotonic() - origin:.0f} s after the load began")

    log = tally(stack.database_url, task_ids)
    verdict = Verdict()
    http = httpx.Client(timeout=30, trust_env=False)
    check_catalog(http, stack, load.want, verdict)
    check_chatbot(http, stack, load.want, verdict)
    missing_rows = len(task_ids) - log.rows
    lost = verdict.lost + missing_rows
    problems = [
        *(f"fault: {e}" for e in injector.errors),
        *(f"never accepted: {n}" for n in load.not_accepted),
        *(f"follow-up not sent: {p.what}" for p in load.pending),
        *(f"follow-up blocked: {w}" for w in load.failed_waits),
        *(f"failed task {f}" for f in (log.failures or [])),
        *verdict.notes,
    ]
    if missing_rows:
        problems.append(f"{missing_rows} accepted tasks have no task-log row")
    if log.unfinished:
        problems.append(f"{log.unfinished} tasks still unfinished (stuck)")
    for problem in problems[:40]:
        say(problem)
    for name, status in stack.exits:
        say(f"{name} exited by itself (status {status}) and was restarted; see {name}.log")
    say(
        f"checked {verdict.checked} downstream facts; faults injected: {len(faults)}; "
        f"process starts: "
        + ", ".join(f"{n}={p.starts}" for n, p in stack.procs.items() if p.starts > 1)
    )
    summary = (
        f"accepted={len(task_ids)} delivered={log.success} lost={lost} "
        f"duplicated_effects={verdict.duplicated} failed={log.failed} "
        f"max_delay_s={log.max_delay_s:.1f} seed={seed}"
    )
    return (0 if not problems else 1), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (>= 30)")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument(
        "--settle", type=float, default=300.0, help="seconds allowed to settle after the load"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: var/chaos/<seed>")
    parser.add_argument("--keep-db", action="store_true", help="keep the task-log database")
    args = parser.parse_args(argv)
    if args.duration < 30:
        parser.error("--duration must be at least 30 seconds")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    workdir = args.workdir or ROOT / "var" / "chaos" / f"{seed}-{int(time.time())}"
    return run(args.duration, seed, args.settle, workdir, args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
