"""What every worker gets at start: a bounded SIGTERM and a liveness heartbeat.

They are Celery bootsteps, added to the one app in `celery_app` (with `ReadsItsSecrets`,
which refuses a PROCESS_ROLE whose production checks skipped the secrets a worker reads):

- `BoundedShutdown` refuses to start a worker whose SIGTERM would be a warm shutdown. Celery's
  soft-shutdown timeout applies to a cold shutdown only; with `REMAP_SIGTERM=SIGQUIT` in the
  environment (read by billiard when it is imported, so it cannot be set from here) SIGTERM
  starts the cold shutdown: running tasks get WORKER_SOFT_SHUTDOWN_TIMEOUT_S, then the rest
  are cancelled and their messages restored to the queue at once. A warm shutdown waits for
  every task with no limit, and Kubernetes' SIGKILL then leaves the messages to the
  visibility timeout.
- `Heartbeat` touches WORKER_HEARTBEAT_FILE from the consumer's event loop. The loop runs only
  while the worker consumes: while it reconnects to the broker, or if it hangs, the file ages
  and `python -m services.core.probes worker-live` fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import bootsteps
from celery.exceptions import ImproperlyConfigured

from services.core.config import get_settings
from services.core.probes import heartbeat_path

REMAP_VARIABLE = "REMAP_SIGTERM"


def remapped_sigterm() -> str | None:
    """What billiard remaps SIGTERM to in this process (None: not remapped)."""
    from billiard.common import REMAP_SIGTERM

    value: str | None = REMAP_SIGTERM
    return value


class BoundedShutdown(bootsteps.Step):  # type: ignore[misc]
    """Refuses to start unless SIGTERM is remapped to Celery's cold (soft) shutdown."""

    label = "bounded shutdown"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        if remapped_sigterm() != "SIGQUIT":
            raise ImproperlyConfigured(
                f"set {REMAP_VARIABLE}=SIGQUIT in the worker's environment: without it SIGTERM "
                "waits for running tasks with no limit instead of "
                "WORKER_SOFT_SHUTDOWN_TIMEOUT_S"
            )


def touch(path: Path) -> None:
    """Set the file's modification time to now, creating it if needed."""
    with path.open("a"):
        pass
    os.utime(path)


class ReadsItsSecrets(bootsteps.Step):  # type: ignore[misc]
    """Refuses to start a worker under a PROCESS_ROLE whose checks skipped what it reads."""

    label = "reads its secrets"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        try:
            get_settings().require("DATABASE_URL", "SECRETS_KEY")
        except ValueError as refused:
            raise ImproperlyConfigured(str(refused)) from None


class Heartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Touches the heartbeat file from the consumer's timer while the consumer runs."""

    label = "heartbeat"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._entry: Any = None

    def start(self, parent: Any) -> None:
        settings = get_settings()
        path = heartbeat_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        touch(path)
        # The consumer's timer fires from its event loop, which stops while the consumer
        # reconnects (the steps are stopped, then started again once connected).
        self._entry = parent.timer.call_repeatedly(
            settings.worker_heartbeat_interval_s, touch, (path,)
        )

    def stop(self, parent: Any) -> None:
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
