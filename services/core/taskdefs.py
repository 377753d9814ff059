"""Task names and their queues, declared once.

The API sends tasks by these names without importing worker code; Celery routes them to
their queue through `route_for`. Later capabilities add their specs here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Queue(StrEnum):
    """Broker queues; each is read by one kind of deployment."""

    ES = "es"
    HTTP = "http"
    MAINTENANCE = "maintenance"


@dataclass(frozen=True)
class TaskSpec:
    """What every process needs to know about a task without importing its body."""

    name: str
    queue: Queue
    soft_time_limit_s: int | None = None  # None: the settings' default
    time_limit_s: int | None = None


class UnknownTaskError(KeyError):
    """A task name that no spec declares."""


_REGISTRY: dict[str, TaskSpec] = {}


def register(*specs: TaskSpec) -> None:
    """Declare task specs; a name may be declared again only with the same spec."""
    for spec in specs:
        known = _REGISTRY.get(spec.name)
        if known is not None and known != spec:
            raise ValueError(f"task {spec.name!r} declared twice with different specs")
        _REGISTRY[spec.name] = spec


def spec_for(name: str) -> TaskSpec:
    """The spec of a task name, or UnknownTaskError."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTaskError(name) from None


def all_specs() -> list[TaskSpec]:
    """Every declared spec."""
    return list(_REGISTRY.values())


# Synthetic end-to-end probe, one per worker queue: API -> broker -> worker -> task log.
CANARY = {
    Queue.ES: TaskSpec("canary_es", Queue.ES),
    Queue.HTTP: TaskSpec("canary_http", Queue.HTTP),
}
TASKLOG_CLEANUP = TaskSpec("tasklog_cleanup", Queue.MAINTENANCE)

register(*CANARY.values(), TASKLOG_CLEANUP)
