"""Serving metrics: the merged view of a process tree, and a fork-safe HTTP endpoint."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Metric, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from services.core.observability.multiproc_dir import ENV, alive

log = logging.getLogger("services.metrics")

_PID = re.compile(r"_(\d+)\.db$")


def multiprocess_active() -> bool:
    """Whether this process writes its metrics to the shared directory."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def sweep_dead(directory: Path) -> list[int]:
    """Forget the live gauges of processes that died (even by SIGKILL); their pids.

    Counters and histograms of a dead pool process stay: what it counted did happen, and
    dropping it would make the worker's totals go backwards.
    """
    pids = {int(m.group(1)) for f in directory.glob("*.db") if (m := _PID.search(f.name))}
    dead = sorted(pid for pid in pids if pid != os.getpid() and not alive(pid))
    for pid in dead:
        mark_process_dead(pid, str(directory))
    return dead


class _SweepingCollector(Collector):
    """MultiProcessCollector that first forgets the live gauges of dead processes."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._merged = MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Iterable[Metric]:
        dead = sweep_dead(self._directory)
        if dead:
            log.info("metrics of exited processes swept", extra={"pids": dead})
        merged: Iterable[Metric] = self._merged.collect()
        return merged


def process_registry(extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """What this process tree measured (merged across processes when multiprocess), + extra."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_active():
        registry.register(_SweepingCollector(Path(os.environ[ENV])))
    else:
        registry.register(_Delegate(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return registry


class _Delegate(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


_served: list[WSGIServer] = []


def _close_in_child() -> None:
    # A forked pool or beat process inherits the listening socket but not the thread that
    # serves it; keeping it open would hold the port after the parent died.
    for server in _served:
        server.socket.close()
    _served.clear()


os.register_at_fork(after_in_child=_close_in_child)


def serve(host: str, port: int, registry: CollectorRegistry) -> WSGIServer | None:
    """Serve `registry` on host:port in a daemon thread; None (logged) if it cannot bind."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("metrics endpoint not started", extra={"port": port, "error": f"{exc.strerror}"})
        return None
    _served.append(server)
    thread.name = "metrics-http"
    log.info("metrics endpoint listening", extra={"url": f"http://{host}:{port}/metrics"})
    return server
