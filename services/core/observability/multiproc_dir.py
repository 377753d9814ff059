"""The directory prometheus-client's multiprocess mode shares between a process and its forks.

Imports nothing that imports prometheus_client: `boot` runs this before that import.

- PROMETHEUS_MULTIPROC_DIR set (a Kubernetes emptyDir, a test's directory): it is emptied at
  start. A container restart keeps an emptyDir and, in a fresh PID namespace, gives the new
  processes the pids of the old ones, whose files would be reopened with their old values.
  A directory owned by another live process (say `celery inspect` run by hand inside a
  worker's pod) is left alone: this process takes a private one instead.
- unset: a private directory under the system's temporary directory, removed at exit;
  directories of processes that no longer run (killed, so no exit handler) are removed too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"
OWNER_FILE = "owner.pid"
_PRIVATE_ROOT = "durable-writes-metrics"


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie, dead but not reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _owner(directory: Path) -> int | None:
    try:
        return int((directory / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _remove_orphans(root: Path) -> None:
    for child in root.iterdir():
        if child.name.isdigit() and not alive(int(child.name)):
            shutil.rmtree(child, ignore_errors=True)


def _private() -> Path:
    root = Path(tempfile.gettempdir()) / _PRIVATE_ROOT
    root.mkdir(parents=True, exist_ok=True)
    _remove_orphans(root)
    directory = root / str(os.getpid())
    creator = os.getpid()

    def remove() -> None:
        if os.getpid() == creator:  # forked children inherit exit handlers
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    return directory


def empty(directory: Path) -> None:
    """Remove every metrics file in `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.suffix == ".db" and entry.is_file():
            entry.unlink(missing_ok=True)


def claim() -> Path:
    """Make this process the owner of an empty multiprocess directory, named in the env."""
    given = os.environ.get(ENV)
    directory = Path(given) if given else _private()
    owner = _owner(directory)
    if owner is not None and owner != os.getpid() and alive(owner):
        directory = _private()
    empty(directory)
    (directory / OWNER_FILE).write_text(str(os.getpid()))
    os.environ[ENV] = str(directory)
    return directory


def claim_before_first_metric() -> Path:
    """`claim`, and switch prometheus-client to multiprocess mode if it was imported without.

    prometheus-client picks its mode when first imported, and the `celery` command imports it
    before our app (Flower's command plugin does). No metric value exists at that point
    (Flower creates its metrics later), so values made from here on can still go to the
    directory: prometheus_client.values.ValueClass is read each time a value is made.
    """
    if "services.core.metrics" in sys.modules:
        raise RuntimeError(
            "services.core.observability.boot must be imported before services.core.metrics"
        )
    directory = claim()
    values: Any = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()
    return directory
