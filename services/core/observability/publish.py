"""Publish latency of every task message any process sends (API, retries, beat, reconciler).

Celery sends `before_task_publish` and `after_task_publish` around the publish, in the
publishing thread, with the broker's retries in between; a publish that fails sends no
`after`, and is counted by the caller (durable_enqueue_publish_failures_total).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celery.signals import after_task_publish, before_task_publish

from services.core import metrics

_local = threading.local()


@before_task_publish.connect(weak=False)  # type: ignore[untyped-decorator]
def _started(**_: Any) -> None:
    _local.started = time.perf_counter()


@after_task_publish.connect(weak=False)  # type: ignore[untyped-decorator]
def _published(routing_key: str | None = None, **_: Any) -> None:
    started = getattr(_local, "started", None)
    if started is None:
        return
    _local.started = None
    metrics.PUBLISH_DURATION.labels(routing_key or "unknown").observe(time.perf_counter() - started)
