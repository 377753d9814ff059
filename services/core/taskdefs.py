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


class Downstream(StrEnum):
    """Systems tasks write to; each has its own circuit breaker and may have a rate limit."""

    ELASTICSEARCH = "elasticsearch"
    CHATBOT = "chatbotmobile"
    EMBEDDINGS = "embeddings"


@dataclass(frozen=True)
class TaskSpec:
    """What every process needs to know about a task without importing its body."""

    name: str
    queue: Queue
    soft_time_limit_s: int | None = None  # None: the settings' default
    time_limit_s: int | None = None
    # Downstreams every attempt talks to, and those a payload flag adds (flag, downstream):
    # an open breaker of any of them parks the task instead of running it.
    downstreams: tuple[Downstream, ...] = ()
    optional_downstreams: tuple[tuple[str, Downstream], ...] = ()

    def downstreams_for(self, payload: dict[str, object]) -> tuple[Downstream, ...]:
        """The downstreams an attempt with this payload talks to."""
        extra = tuple(d for flag, d in self.optional_downstreams if payload.get(flag))
        return self.downstreams + extra


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
STORED_FILES_CLEANUP = TaskSpec("stored_files_cleanup", Queue.MAINTENANCE)
TASKLOG_RECONCILE = TaskSpec("tasklog_reconcile", Queue.MAINTENANCE)


def _http(name: str, soft: int = 50, hard: int = 60) -> TaskSpec:
    return TaskSpec(
        name,
        Queue.HTTP,
        soft_time_limit_s=soft,
        time_limit_s=hard,
        downstreams=(Downstream.CHATBOT,),
    )


# ChatbotMobile writes (the plan's names); file work gets the plan's 120 s, imports 300 s.
DOC_UPLOAD_TEXT = _http("doc_upload_text")
DOC_UPLOAD_FILE = _http("doc_upload_file", 100, 120)
DOC_UPLOAD_URL = _http("doc_upload_url")
DOC_DELETE_ALL = _http("doc_delete_all")
DOC_DELETE_BY_SOURCE = _http("doc_delete_by_source")
DOC_TRIGGER_REINDEX = _http("doc_trigger_reindex")
FAQ_CREATE = _http("faq_create", 100, 120)
FAQ_UPDATE = _http("faq_update", 100, 120)
FAQ_DELETE = _http("faq_delete")
FAQ_DELETE_ALL = _http("faq_delete_all")
FAQ_IMPORT = _http("faq_import", 240, 300)
CHATBOT_TASKS = (
    DOC_UPLOAD_TEXT,
    DOC_UPLOAD_FILE,
    DOC_UPLOAD_URL,
    DOC_DELETE_ALL,
    DOC_DELETE_BY_SOURCE,
    DOC_TRIGGER_REINDEX,
    FAQ_CREATE,
    FAQ_UPDATE,
    FAQ_DELETE,
    FAQ_DELETE_ALL,
    FAQ_IMPORT,
)

register(*CANARY.values(), TASKLOG_CLEANUP, STORED_FILES_CLEANUP, TASKLOG_RECONCILE)
register(*CHATBOT_TASKS)
