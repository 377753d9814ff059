"""Probes for Kubernetes: `python -m services.core.probes worker-live [--file F] [--max-age S]`.

worker-live exits 0 while the worker's heartbeat file (touched by its consumer loop, see
`worker_boot.Heartbeat`) is younger than the max age, else 1 with the reason on stderr. Use it
as an exec liveness probe of every worker container; the defaults come from
WORKER_HEARTBEAT_FILE and WORKER_HEARTBEAT_MAX_AGE_S.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.core.config import Settings

DEFAULT_HEARTBEAT_NAME = "durable-writes-worker.alive"


def heartbeat_path(settings: Settings) -> Path:
    """The worker heartbeat file of these settings."""
    if settings.worker_heartbeat_file:
        return Path(settings.worker_heartbeat_file)
    return Path(tempfile.gettempdir()) / DEFAULT_HEARTBEAT_NAME


def heartbeat_age_s(path: Path, now: float | None = None) -> float | None:
    """Seconds since the heartbeat file was touched; None if there is none."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return (now if now is not None else time.time()) - modified


def worker_live(path: Path, max_age_s: float) -> tuple[bool, str]:
    """Whether the worker consumed recently, and what the probe says about it."""
    age = heartbeat_age_s(path)
    if age is None:
        return False, f"no heartbeat file at {path}: the worker has not started consuming"
    if age > max_age_s:
        return False, f"heartbeat is {age:.0f} s old (limit {max_age_s:g} s): not consuming"
    return True, f"heartbeat {age:.1f} s old"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m services.core.probes")
    commands = parser.add_subparsers(dest="command", required=True)
    live = commands.add_parser("worker-live", help="fail when the worker stopped consuming")
    live.add_argument("--file", type=Path, default=None, help="default: WORKER_HEARTBEAT_FILE")
    live.add_argument(
        "--max-age", type=float, default=None, help="seconds; default: WORKER_HEARTBEAT_MAX_AGE_S"
    )
    args = parser.parse_args(argv)
    path, max_age = args.file, args.max_age
    if path is None or max_age is None:
        from services.core.config import get_settings

        settings = get_settings()
        path = path or heartbeat_path(settings)
        max_age = max_age if max_age is not None else settings.worker_heartbeat_max_age_s
    ok, message = worker_live(path, max_age)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
