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


# Priority sub-lists kombu's Redis transport keeps beside each queue ("es\x06\x163", ...).
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"


def queue_keys(queue: Queue, prefix: str = "") -> list[tuple[int, str]]:
    """The Redis lists of one queue under `prefix`: (priority step, key), step 0 first."""
    return [
        (step, f"{prefix}{queue.value}" + (f"{PRIORITY_SEP}{step}" if step else ""))
        for step in PRIORITY_STEPS
    ]


class Downstream(StrEnum):
    """Systems tasks write to; each has its own circuit breaker and may have a rate limit."""

    ELASTICSEARCH = "elasticsearch"
    CHATBOT = "chatbotmobile"
    EMBEDDINGS = "embeddings"


@dataclass(frozen=True)
class Ordering:
    """Writes of one scope take effect in acceptance order where their keys meet.

    The scope is per customer (`<scope>:<customer_id>`); the key is the payload field that
    names the entity, or None for a write that covers the whole scope (a delete-all). Two
    writes meet when their keys are equal or either covers the scope.
    `waits`: the write is claimed only once every earlier write it meets has finished (it
    waits in the log meanwhile, spending no retries). A catalog write does not wait (its
    version orders it) but is waited for by a later delete-all of its scope.
    `changes`: the write changes what it covers; a redrive of an earlier write it meets is
    refused once it exists (a reindex, which only reads the documents, changes nothing).
    """

    scope: str
    key_field: str | None
    waits: bool = True
    changes: bool = True

    def scope_of(self, payload: dict[str, object]) -> str:
        """The ordering scope of a payload."""
        return f"{self.scope}:{payload['customer_id']}"

    def key_of(self, payload: dict[str, object]) -> str | None:
        """The ordering key of a payload (None: the whole scope)."""
        if self.key_field is None:
            return None
        # The API names every document's source as ChatbotMobile files it (`text:<title>`,
        # `file:<name>`, `url:<url>`); only a text without a title has none, and ChatbotMobile
        # files it under its own new id, which no earlier delete can name: key "" (it meets
        # other such uploads and the delete-alls).
        return str(payload.get(self.key_field) or "")


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
    # Per-entity ordering (ChatbotMobile writes; a catalog delete-all's wait for the earlier
    # writes of its customer); None: none.
    ordering: Ordering | None = None
    # Its downstream orders writes by version (Elasticsearch): a redrive keeps the write's
    # place in acceptance order (its version), which no later write can lose to.
    versioned: bool = False
    # A message of it that has no task-log row is run and recorded (upkeep that beat sends
    # without the enqueue path); any other is parked for an operator.
    adopts_unknown: bool = False

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


def changing_task_names() -> frozenset[str]:
    """Names of the ordered writes that change what they cover."""
    return frozenset(s.name for s in _REGISTRY.values() if s.ordering and s.ordering.changes)


# Synthetic end-to-end probe, one per worker queue: API -> broker -> worker -> task log.
CANARY = {
    Queue.ES: TaskSpec("canary_es", Queue.ES),
    Queue.HTTP: TaskSpec("canary_http", Queue.HTTP),
}
TASKLOG_CLEANUP = TaskSpec("tasklog_cleanup", Queue.MAINTENANCE, adopts_unknown=True)
STORED_FILES_CLEANUP = TaskSpec("stored_files_cleanup", Queue.MAINTENANCE, adopts_unknown=True)
TASKLOG_RECONCILE = TaskSpec("tasklog_reconcile", Queue.MAINTENANCE, adopts_unknown=True)
# Untracked upkeep (beat fires it every few seconds): publishes tasks held in the log.
TASKLOG_RELEASE = TaskSpec("tasklog_release", Queue.MAINTENANCE)


def _http(name: str, ordering: Ordering, soft: int = 50, hard: int = 60) -> TaskSpec:
    return TaskSpec(
        name,
        Queue.HTTP,
        soft_time_limit_s=soft,
        time_limit_s=hard,
        downstreams=(Downstream.CHATBOT,),
        ordering=ordering,
    )


# The ordering keys of ChatbotMobile writes, which carry no versions: documents of one
# customer by source, FAQs of one customer by id; delete-alls, imports and reindexes cover
# their whole scope.
DOCUMENTS = Ordering("docs", "source")
ALL_DOCUMENTS = Ordering("docs", None)
ALL_DOCUMENTS_READ = Ordering("docs", None, changes=False)
ONE_FAQ = Ordering("faq", "faq_id")
ALL_FAQS = Ordering("faq", None)

# ChatbotMobile writes (the plan's names); file work gets the plan's 120 s, imports 300 s.
DOC_UPLOAD_TEXT = _http("doc_upload_text", DOCUMENTS)
DOC_UPLOAD_FILE = _http("doc_upload_file", DOCUMENTS, 100, 120)
DOC_UPLOAD_URL = _http("doc_upload_url", DOCUMENTS)
DOC_DELETE_ALL = _http("doc_delete_all", ALL_DOCUMENTS)
DOC_DELETE_BY_SOURCE = _http("doc_delete_by_source", DOCUMENTS)
DOC_TRIGGER_REINDEX = _http("doc_trigger_reindex", ALL_DOCUMENTS_READ)
FAQ_CREATE = _http("faq_create", ONE_FAQ, 100, 120)
FAQ_UPDATE = _http("faq_update", ONE_FAQ, 100, 120)
FAQ_DELETE = _http("faq_delete", ONE_FAQ)
FAQ_DELETE_ALL = _http("faq_delete_all", ALL_FAQS)
FAQ_IMPORT = _http("faq_import", ALL_FAQS, 240, 300)
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

register(
    *CANARY.values(), TASKLOG_CLEANUP, STORED_FILES_CLEANUP, TASKLOG_RECONCILE, TASKLOG_RELEASE
)
register(*CHATBOT_TASKS)
