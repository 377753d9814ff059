"""Model-based test: random interleavings of writes and faults against the whole stack.

Hypothesis draws a sequence of catalog writes (upserts with and without caller versions or
`updated_at`, deletes, bulk writes, delete-alls), FAQ writes and document writes for one
customer (uploads filed under a source of their own or under the default one ChatbotMobile
gives them, deletes by either), redrives of any task at any point, and messages with no
task-log row, mixed with faults: Elasticsearch or ChatbotMobile failing, answering slowly,
applying a write and answering too late, or applying it and dropping the answer; a pool
process killed mid-task, or frozen past its hard time limit; a whole worker killed (and
started again); a task's message delivered again; a reconciler pass. Embeddings are slow
throughout, so an upsert with an embedding is still in flight when the writes accepted after
it run. Beside the workers whose clocks are right run an es-worker whose clock is ahead and
an http-worker whose clock is behind, by more than an attempt's lease. Each write is sent
through the API and answered before the next, so acceptance order is send order.

When everything has settled, what Elasticsearch and ChatbotMobile hold must be what the
writes imply applied in acceptance order (`tests/support/model.py`): a delete-all removes
every write accepted before it, the newest accepted write of each entity wins, a redrive
never undoes a later accepted write. Every task must have succeeded but those ChatbotMobile
must refuse and the parked messages, and no two deliveries of one write may have overlapped
at a downstream.

`MODEL_EXAMPLES` (default 12) and `MODEL_STEPS` (default 14) size the run; `MODEL_SEED` repeats
one. `make test` runs the default size, `make test-model-long` a nightly one; the seed is
printed either way.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, event, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, rule
from sqlalchemy import select

from services.core.celery_app import make_celery_app
from services.core.search.versions import micros
from services.core.tasklog.models import TaskLog
from services.core.tasklog.reconciler import Reconciler
from tests.support.flow import all_finished
from tests.support.model import CatalogModel, DocumentModel, FaqHistory, FaqModel
from tests.support.modelstack import SHORT_PERIODS, ModelStack, model_stack
from tests.support.procs import wait_until

EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "12"))
STEPS = int(os.environ.get("MODEL_STEPS", "14"))
# Each example settles within two minutes or fails; the run is bounded by its size.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 + 180 * EXAMPLES)]

ITEMS = st.sampled_from(["i1", "i2", "i3"])
FAQS = st.sampled_from(["f1", "f2"])
# Short periods, so that an example settles within seconds of its last fault.
TIMINGS = {
    **SHORT_PERIODS,
    "BROKER_RESTORE_INTERVAL_S": "2",
    "RECONCILE_INTERVAL_S": "2",
    "RECONCILE_STALE_S": "3",
    "RATE_LIMITS": "es_upsert_product=30/s",
}
# Workers whose clocks are off by more than an attempt's lease (hard limit 6 s + margin 2 s)
# and less than the visibility timeout (kombu's restores go by each process's clock too).
SKEW_S = 10.0
# A frozen pool process is let go again after this (it was killed at its hard time limit
# if it ran a task).
FROZEN_S = 8.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelStack]:
    # Every embedding takes a while, for the whole run: an upsert with_embedding waits for
    # it while the writes accepted after it go ahead on the worker's other process.
    log_dir = tmp_path_factory.mktemp("model")
    with model_stack(
        log_dir, "model", TIMINGS, embeddings_delay_s=0.8, skewed_workers_s=SKEW_S
    ) as started:
        yield started


def _updated_at(minute: int) -> tuple[str, int]:
    at = datetime(2024, 1, 1, 0, minute, tzinfo=UTC)
    return at.isoformat().replace("+00:00", "Z"), micros(at)


RULES: Counter[str] = Counter()  # rule calls of the whole run
STEPS_RUN: list[int] = []  # steps of each example


def counted(rule_function: Callable[..., None]) -> Callable[..., None]:
    """Count the calls of a rule (the run reports which rules it exercised)."""

    @functools.wraps(rule_function)
    def run(self: OrderingMachine, **kwargs: Any) -> None:
        RULES[rule_function.__name__] += 1
        self.steps += 1
        rule_function(self, **kwargs)

    return run


class OrderingMachine(RuleBasedStateMachine):
    """Writes for one customer, faults in between; checked against the model at the end."""

    stack: ClassVar[ModelStack]
    every_task: ClassVar[list[str]] = []

    def __init__(self) -> None:
        super().__init__()
        self.customer = f"m{uuid.uuid4().hex[:12]}"
        self.catalog = CatalogModel()
        self.faqs = FaqModel()
        self.faq_history = FaqHistory()
        self.documents = DocumentModel()
        self.titles: list[str] = []  # of uploads filed under their default source
        self.tasks: list[str] = []
        # Tasks that must fail: writes ChatbotMobile refuses (409, 404), parked messages.
        self.refused: set[str] = set()
        self.retried: set[str] = set()
        self.serial = 0
        self.steps = 0
        self.overlaps_before = self.stack.overlaps()

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def _accept(self, answer: httpx.Response) -> str:
        assert answer.status_code == 202, answer.text
        task_id: str = answer.json()["task_id"]
        self._track(task_id)
        return task_id

    def _track(self, task_id: str) -> None:
        self.tasks.append(task_id)
        self.every_task.append(task_id)

    # -- catalog writes -----------------------------------------------------------------

    @rule(
        item=ITEMS,
        how=st.sampled_from(["none", "version", "updated_at"]),
        value=st.integers(1, 4),
        embed=st.booleans(),
    )
    @counted
    def es_upsert(self, item: str, how: str, value: int, embed: bool) -> None:
        data: dict[str, Any] = {"n": self._next()}
        body: dict[str, Any] = {"customer_id": self.customer, "data": data, "with_embedding": embed}
        version = None
        if how == "version":
            body["version"], version = value, ("version", value)
        elif how == "updated_at":
            data["updated_at"], at = _updated_at(value)
            version = ("updated_at", at)
        self._accept(self.stack.api.put(f"/api/v1/products/{item}", json=body))
        self.catalog.upsert(item, data, version)

    @rule(item=ITEMS, value=st.none() | st.integers(1, 4))
    @counted
    def es_delete(self, item: str, value: int | None) -> None:
        params: dict[str, Any] = {"customer_id": self.customer}
        if value is not None:
            params["version"] = value
        self._accept(self.stack.api.delete(f"/api/v1/products/{item}", params=params))
        self.catalog.delete(item, ("version", value) if value is not None else None)

    @rule(
        items=st.lists(ITEMS, min_size=1, max_size=3, unique=True),
        value=st.none() | st.integers(1, 4),
        embed=st.booleans(),
    )
    @counted
    def es_bulk_upsert(self, items: list[str], value: int | None, embed: bool) -> None:
        datas = {i: {"n": self._next()} for i in items}
        sent = [
            {"id": i, "data": d, **({"version": value} if value else {})} for i, d in datas.items()
        ]
        body = {"customer_id": self.customer, "items": sent, "with_embedding": embed}
        self._accept(self.stack.api.post("/api/v1/products/bulk-upsert", json=body))
        for item, data in datas.items():
            self.catalog.upsert(item, data, ("version", value) if value else None)

    @rule(
        items=st.lists(ITEMS, min_size=1, max_size=3, unique=True),
        value=st.none() | st.integers(1, 4),
    )
    @counted
    def es_bulk_delete(self, items: list[str], value: int | None) -> None:
        body: dict[str, Any] = {"customer_id": self.customer, "ids": items}
        if value is not None:
            body["version"] = value
        self._accept(self.stack.api.post("/api/v1/products/bulk-delete", json=body))
        for item in items:
            self.catalog.delete(item, ("version", value) if value is not None else None)

    @rule()
    @counted
    def es_delete_all(self) -> None:
        self._accept(
            self.stack.api.delete("/api/v1/products", params={"customer_id": self.customer})
        )
        self.catalog.delete_all()

    # -- ChatbotMobile writes ---------------------------------------------------------

    @rule(faq=FAQS)
    @counted
    def faq_create(self, faq: str) -> None:
        answer = f"created {self._next()}"
        form = {"customer_id": self.customer, "faq_id": faq, "question": "q", "answer": answer}
        task_id = self._accept(self.stack.api.post("/api/v1/mobile-faq", data=form))
        created = self.faqs.create(faq, answer)
        self.faq_history.accept(task_id, faq, created, ("create", faq, answer))
        if not created:
            self.refused.add(task_id)

    @rule(faq=FAQS)
    @counted
    def faq_update(self, faq: str) -> None:
        answer = f"updated {self._next()}"
        form = {"customer_id": self.customer, "answer": answer}
        task_id = self._accept(self.stack.api.put(f"/api/v1/mobile-faq/{faq}", data=form))
        updated = self.faqs.update(faq, answer)
        self.faq_history.accept(task_id, faq, updated, ("update", faq, answer))
        if not updated:
            self.refused.add(task_id)

    @rule(faq=FAQS)
    @counted
    def faq_delete(self, faq: str) -> None:
        params = {"customer_id": self.customer}
        task_id = self._accept(self.stack.api.delete(f"/api/v1/mobile-faq/{faq}", params=params))
        self.faqs.delete(faq)
        self.faq_history.accept(task_id, faq, True)

    @rule()
    @counted
    def faq_delete_all(self) -> None:
        params = {"customer_id": self.customer}
        task_id = self._accept(self.stack.api.delete("/api/v1/mobile-faqs", params=params))
        self.faqs.delete_all()
        self.faq_history.accept(task_id, None, True)

    @rule(source=st.sampled_from(["s1", "s2", None]))
    @counted
    def doc_upload(self, source: str | None) -> None:
        title = f"doc {self._next()}"
        body: dict[str, Any] = {"customer_id": self.customer, "title": title, "text": title}
        if source is not None:
            body["source"] = source
        self._accept(self.stack.api.post("/api/v1/documents/upload-text", json=body))
        self.documents.upload(source, title)
        if source is None:
            self.titles.append(title)

    @rule(source=st.sampled_from(["s1", "s2", "default"]), pick=st.integers(0, 100))
    @counted
    def doc_delete_by_source(self, source: str, pick: int) -> None:
        if source == "default":
            if not self.titles:
                return
            # The source ChatbotMobile files an upload without one under.
            source = f"text:{self.titles[pick % len(self.titles)]}"
            event("delete by a default source")
        params = {"customer_id": self.customer, "source": source}
        self._accept(self.stack.api.delete("/api/v1/documents/delete-by-source", params=params))
        self.documents.delete_by_source(source)

    @rule()
    @counted
    def doc_delete_all(self) -> None:
        params = {"customer_id": self.customer}
        self._accept(self.stack.api.delete("/api/v1/documents/delete-all", params=params))
        self.documents.delete_all()

    # -- faults -------------------------------------------------------------------------

    @rule(
        downstream=st.sampled_from(["es", "chatbot"]),
        mode=st.sampled_from(["error", "timeout", "slow", "drop"]),
        seconds=st.floats(0.3, 2.0),
    )
    @counted
    def downstream_fails(self, downstream: str, mode: str, seconds: float) -> None:
        standin = self.stack.es if downstream == "es" else self.stack.chatbot
        if mode == "error":
            standin.fault("error", seconds, status=503)
        elif mode == "timeout":
            # The write is applied, its answer comes after the client gave up waiting.
            standin.fault("timeout", seconds, delay_s=2.5)
        elif mode == "drop":
            # The write is applied, and its connection cut before the answer.
            standin.fault("drop", seconds)
        else:
            # Answers come late but in time: an attempt stays live for a while.
            standin.fault("slow", seconds, delay_s=1.2)

    @rule(which=st.sampled_from(["es", "http"]))
    @counted
    def pool_process_killed(self, which: str) -> None:
        children = self._children(which)
        if children:
            # It may have been replaced meanwhile (the pool's own recycling): nothing to kill.
            with contextlib.suppress(ProcessLookupError):
                os.kill(random.Random(self.serial).choice(children), signal.SIGKILL)

    @rule(which=st.sampled_from(["es", "http"]))
    @counted
    def pool_process_frozen(self, which: str) -> None:
        # A pool process hung where no signal handler runs (a stuck system call): its task,
        # if it ran one, reaches the hard time limit and the worker kills it.
        children = self._children(which)
        if not children:
            return
        pid = random.Random(self.serial).choice(children)
        event(f"pool process of {which} frozen")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        parent = self.stack.workers[which].proc.pid  # type: ignore[union-attr]
        thaw = threading.Timer(FROZEN_S, _thaw, (pid, parent))
        thaw.daemon = True
        thaw.start()

    @rule(which=st.sampled_from(["es", "http"]))
    @counted
    def worker_killed(self, which: str) -> None:
        # The whole worker at once: its messages come back after the visibility timeout.
        event(f"{which} worker killed")
        worker = self.stack.workers[which]
        worker.kill()
        worker.start(timeout_s=60)

    @rule(pick=st.integers(0, 10_000))
    @counted
    def redrive(self, pick: int) -> None:
        if not self.tasks:
            return
        task_id = self.tasks[pick % len(self.tasks)]
        before = self.stack.repo.get_by_task_id(task_id)
        later = self.faq_history.later(task_id) if task_id in self.faq_history.writes else []
        unsettled = {w.task_id for w in later if not self._finished(w.task_id)}
        answer = self.stack.api.post(f"/api/v1/tasks/{task_id}/retry")
        event(f"redrive answered {answer.status_code}")
        if answer.status_code == 409:
            failed = before is not None and before.status == "failed"
            # Refused: not failed (yet), retried already, or a later write of the same FAQ
            # has taken effect, or may still (it had not finished when the API looked).
            assert (
                not failed
                or task_id in self.retried
                or any(w.takes_effect or w.task_id in unsettled for w in later)
            ), (task_id, answer.text)
            return
        assert answer.status_code == 202, answer.text
        write = self.faq_history.writes.get(task_id)
        assert write is not None and write.resend is not None, (task_id, "not a FAQ write")
        assert task_id not in self.retried
        assert not [w for w in later if w.takes_effect], (task_id, "undoes a later write")
        self.retried.add(task_id)
        new = answer.json()["task_id"]
        self._track(new)
        # A new write, accepted now, standing in the original's place.
        op, faq, text = write.resend
        done = self.faqs.apply(op, faq, text)
        self.faq_history.accept(new, faq, done, write.resend, place=write.place)
        if not done:
            self.refused.add(new)

    @rule(faq=FAQS)
    @counted
    def unknown_message(self, faq: str) -> None:
        # A message with no task-log row (a restored broker, say): parked, never run.
        task_id, answer = str(uuid.uuid4()), f"unknown {self._next()}"
        payload = {"customer_id": self.customer, "faq_id": faq, "question": "q", "answer": answer}
        make_celery_app(self.stack.settings).send_task(
            "faq_create", kwargs={"payload": payload}, task_id=task_id, queue="http"
        )
        row = wait_until(
            lambda: self._finished(task_id), 90, interval_s=0.2, what=f"{task_id} to be parked"
        )
        assert (row.status, row.failure_reason) == ("failed", "unknown_message")
        event("unknown message parked")
        self._track(task_id)
        self.refused.add(task_id)
        self.faq_history.accept(task_id, faq, False, ("create", faq, answer))

    def _finished(self, task_id: str) -> TaskLog | None:
        row = self.stack.repo.get_by_task_id(task_id)
        return row if row is not None and row.is_finished else None

    def _children(self, which: str) -> list[int]:
        worker = self.stack.workers[which]
        assert worker.proc is not None
        found = subprocess.run(
            ["pgrep", "-P", str(worker.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in found.stdout.split()]

    @rule(pick=st.integers(0, 10_000))
    @counted
    def delivered_again(self, pick: int) -> None:
        if not self.tasks:
            return
        row = self.stack.repo.get_by_task_id(self.tasks[pick % len(self.tasks)])
        assert row is not None
        make_celery_app(self.stack.settings).send_task(
            row.task_name, kwargs={"payload": row.payload}, task_id=row.task_id, queue=row.queue
        )

    @rule()
    @counted
    def reconciler_pass(self) -> None:
        from services.core.health import redis_client

        client = redis_client(self.stack.settings)
        try:
            Reconciler(
                sessions=self.stack.repo.sessions,
                celery=make_celery_app(self.stack.settings),
                redis=client,
                key_prefix=self.stack.settings.redis_key_prefix,
                stale_s=0.0,
                processing_stale_s=self.stack.settings.processing_stale_s,
            ).run_once()
        finally:
            client.close()

    # -- the verdict --------------------------------------------------------------------

    def teardown(self) -> None:
        STEPS_RUN.append(self.steps)
        for standin in (self.stack.es, self.stack.chatbot):
            standin.clear_fault()
        if not self.tasks:
            return
        rows = wait_until(
            lambda: all_finished(self.stack.repo, self.tasks),
            180,
            interval_s=0.3,
            what=f"the {len(self.tasks)} tasks of {self.customer} to finish",
        )
        outcomes = {r.task_id: (r.task_name, r.status, r.error_message) for r in rows}
        failed = {t for t, (_, status, _) in outcomes.items() if status == "failed"}
        assert failed == self.refused, {t: outcomes[t] for t in failed ^ self.refused}
        stored = {i: doc["n"] for i, doc in self.stack.es_items(self.customer).items()}
        history = [(r.seq, r.task_id, r.task_name, r.status, r.attempts) for r in rows]
        expected = {i: data["n"] for i, data in self.catalog.items.items()}
        assert stored == expected, (stored, expected, history)
        faqs = self.stack.upstream("/v1/faqs", self.customer)
        assert {f["faq_id"]: f["answer"] for f in faqs} == self.faqs.answers, history
        documents = self.stack.upstream("/v1/documents", self.customer)
        held = Counter((d["source"], d["title"]) for d in documents)
        assert held == self.documents.documents, history
        assert self.stack.overlaps() == self.overlaps_before, (
            "two deliveries overlapped",
            self.stack.overlapped(),
            history,
        )


def _thaw(pid: int, parent: int) -> None:
    """Let a frozen pool process go on, if it is still there (and still that process)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return
    if ppid == parent:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_writes_take_effect_in_acceptance_order_whatever_fails(
    stack: ModelStack, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen = os.environ.get("MODEL_SEED")
    run_seed = int(chosen) if chosen else random.SystemRandom().randrange(2**32)
    with capsys.disabled():
        print(f"\nmodel-based test: MODEL_SEED={run_seed} examples={EXAMPLES} steps={STEPS}")
    OrderingMachine.stack = stack
    # Shrinking reruns examples against real processes for a long time; opt in to it.
    phases = list(Phase) if os.environ.get("MODEL_SHRINK") else [Phase.explicit, Phase.generate]
    run = get_state_machine_test(
        OrderingMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            phases=phases,
            suppress_health_check=list(HealthCheck),
        ),
    )
    started = time.monotonic()
    seed(run_seed)(run)()
    with capsys.disabled():
        print(
            f"model-based test: {len(STEPS_RUN)} examples, {sum(STEPS_RUN)} steps "
            f"(at most {max(STEPS_RUN, default=0)} in one), "
            f"{time.monotonic() - started:.0f} s; "
            f"rules: {dict(sorted(RULES.items()))}"
        )
    # Every task of every example settled; none is left unfinished in the log.
    with stack.repo.sessions() as session:
        open_rows = session.scalars(
            select(TaskLog.task_id).where(
                TaskLog.task_id.in_(OrderingMachine.every_task),
                TaskLog.status.not_in(["success", "failed"]),
            )
        ).all()
    assert OrderingMachine.every_task and open_rows == []
