"""Metrics of a Celery worker process tree: its own endpoint, pool children included.

    from services.core.observability import boot  # first import of the worker package
    ...
    instrument_worker(ProcessKind.ES_WORKER)

The main process serves the merged metrics of itself and its pool children on the kind's
port (`*_METRICS_PORT`); a child that exits, even by SIGKILL, has its live gauges dropped
at the next scrape (its pid no longer runs), and its counters kept.
"""

from __future__ import annotations

import gc
import os
import time
from enum import StrEnum
from typing import Any

from celery.signals import beat_init, task_postrun, task_prerun, worker_init

from services.core import metrics
from services.core.config import Settings, get_settings
from services.core.guards.ratelimit import parse_limits
from services.core.observability import serving
from services.core.observability.series import preinit_poison, preinit_worker
from services.core.taskdefs import TaskSpec


class ProcessKind(StrEnum):
    """Kinds of processes that serve metrics on a port of their own."""

    ES_WORKER = "es_worker"
    HTTP_WORKER = "http_worker"
    SCHEDULER = "scheduler"


def metrics_port(settings: Settings, kind: ProcessKind) -> int:
    """The metrics port of a process kind (0: not served)."""
    return {
        ProcessKind.ES_WORKER: settings.es_worker_metrics_port,
        ProcessKind.HTTP_WORKER: settings.http_worker_metrics_port,
        ProcessKind.SCHEDULER: settings.scheduler_metrics_port,
    }[kind]


_kind: list[ProcessKind] = []
# The worker's main process, and the metric files a forked child must not close again.
_main_pid: list[int] = []
_inherited: list[Any] = []


def instrument_worker(kind: ProcessKind) -> None:
    """Serve this worker's metrics once it starts; the scheduler adds the shared state."""
    _kind[:] = [kind]
    worker_init.connect(_on_worker_init, weak=False)
    beat_init.connect(_on_beat_init, weak=False)
    task_prerun.connect(_on_task_start, weak=False)
    task_postrun.connect(_on_task_end, weak=False)


def _spec(task: Any) -> TaskSpec | None:
    spec = getattr(task, "tracked_spec", None)
    return spec if isinstance(spec, TaskSpec) else None


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    # Main process, before the pool forks.
    _main_pid[:] = [os.getpid()]
    settings = get_settings()
    consumed = set(sender.app.amqp.queues.consume_from or {})
    started = time.time()
    for queue in sorted(consumed):
        metrics.WORKER_START_TIME.labels(queue).set(started)
    tracked = (_spec(task) for task in sender.app.tasks.values())
    preinit_worker(
        (spec for spec in tracked if spec is not None and spec.queue in consumed),
        rate_limits=parse_limits(settings.rate_limits),
    )
    preinit_poison(sorted(consumed))
    kind = _kind[0]
    port = metrics_port(settings, kind)
    if port:
        serving.serve(settings.metrics_host, port, serving.process_registry(_extra(kind)))


def _on_beat_init(**_: Any) -> None:
    """Embedded beat (the scheduler's `--beat`) runs in a child that closed every descriptor
    it inherited, the parent's open metric files among them. At its first metric,
    prometheus-client sees the new pid and closes those files itself: the close fails (the
    number is gone, or now another file's), its state is left half reset, and every metric
    of the child fails from then on (beat's publish latency was never recorded). Their
    mappings are dropped here and the file objects kept, never closed: the child then opens
    files of its own pid, which the scheduler's endpoint serves with the rest."""
    if not _main_pid or os.getpid() == _main_pid[0]:
        return  # not a child of this worker (a standalone `celery beat`): nothing inherited
    from prometheus_client.mmap_dict import MmapedDict

    for found in gc.get_objects():
        if isinstance(found, MmapedDict) and found._f is not None:
            _inherited.append(found._f)
            found._m.close()
            found._f = None  # type: ignore[assignment]


def _extra(kind: ProcessKind) -> list[Any]:
    if kind is not ProcessKind.SCHEDULER:
        return []
    from services.core.observability.exporter import shared_state_collector

    return [shared_state_collector(get_settings())]


def _on_task_start(sender: Any = None, **_: Any) -> None:
    spec = _spec(sender)
    if spec is not None:
        metrics.TASKS_RUNNING.labels(spec.name, spec.queue).inc()


def _on_task_end(sender: Any = None, **_: Any) -> None:
    spec = _spec(sender)
    if spec is not None:
        metrics.TASKS_RUNNING.labels(spec.name, spec.queue).dec()
