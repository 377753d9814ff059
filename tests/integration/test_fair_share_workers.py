"""Fair share with real workers: turns go round the customers, and order still holds.

One stack with fair share on and a tiny bound (FAIR_SHARE_BOUND=2; two pool processes per
worker): the API, an es-worker, an http-worker, the scheduler (releaser) and the stand-ins.
- Three customers each send a burst of catalog writes, one customer after the other: the
  workers run them in turns across the customers, not customer by customer.
- A model-based run (hypothesis): catalog, FAQ and document writes of three customers mixed
  with downstream faults, most of them over their customer's bound. In the end what
  Elasticsearch and ChatbotMobile hold is what each customer's writes imply in acceptance
  order (delete-alls included), and no two deliveries of one write overlapped.

`FAIR_MODEL_EXAMPLES` (default 5) and `FAIR_MODEL_STEPS` (default 20) size the model run;
`FAIR_MODEL_SEED` repeats one.
"""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    rule,
)

from tests.support.flow import all_finished
from tests.support.model import CatalogModel, DocumentModel, FaqModel
from tests.support.modelstack import SHORT_PERIODS, ModelStack, model_stack
from tests.support.procs import wait_until

EXAMPLES = int(os.environ.get("FAIR_MODEL_EXAMPLES", "5"))
STEPS = int(os.environ.get("FAIR_MODEL_STEPS", "20"))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180 + 120 * EXAMPLES)]

BOUND = 2
CONCURRENCY = 2
TIMINGS = {**SHORT_PERIODS, "FAIR_SHARE_BOUND": str(BOUND), "RATE_LIMITS": ""}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelStack]:
    log_dir = tmp_path_factory.mktemp("fair")
    update = {"fair_share_bound": BOUND}
    with model_stack(
        log_dir, "fairwork", TIMINGS, embeddings_delay_s=0.6, settings_update=update
    ) as started:
        yield started


def _accepted(answer: httpx.Response) -> str:
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def test_workers_take_the_customers_writes_in_turns(stack: ModelStack) -> None:
    # Each write takes a while: the three bursts are all accepted before the first finishes.
    stack.es.fault("slow", 60, delay_s=0.25)
    try:
        customers = [f"rr{uuid.uuid4().hex[:8]}" for _ in range(3)]
        owner: dict[str, str] = {}
        for customer in customers:  # the first customer's whole burst, then the second's...
            for n in range(8):
                body = {"customer_id": customer, "data": {"n": n}}
                owner[_accepted(stack.api.put(f"/api/v1/products/p{n}", json=body))] = customer
        rows = wait_until(lambda: all_finished(stack.repo, list(owner)), 90, interval_s=0.2)
    finally:
        stack.es.clear_fault()
    assert {r.status for r in rows} == {"success"}
    order = [owner[r.task_id] for r in sorted(rows, key=lambda r: r.finished_at)]
    print(f"\nfinish order: {[customers.index(c) for c in order]}")
    # In every stretch of the run, no customer got ahead of another still waiting by more
    # than its bound plus the writes running at once. One customer after the other (first
    # come, first served) would put the first customer 8 ahead.
    done: Counter[str] = Counter()
    for n, customer in enumerate(order):
        done[customer] += 1
        waiting = [c for c in customers if done[c] < 8]
        if waiting and n < len(order) - 1:
            ahead = max(done[c] for c in customers) - min(done[c] for c in waiting)
            assert ahead <= BOUND + CONCURRENCY, (n, order)


ITEMS = st.sampled_from(["i1", "i2", "i3"])
FAQS = st.sampled_from(["f1", "f2"])
CUSTOMER = st.integers(0, 2)


class FairOrderingMachine(RuleBasedStateMachine):
    """Writes of three customers, most of them past their bound; checked per customer."""

    stack: ClassVar[ModelStack]

    def __init__(self) -> None:
        super().__init__()
        tag = uuid.uuid4().hex[:8]
        self.customers = [f"fm{tag}{n}" for n in range(3)]
        self.catalog = [CatalogModel() for _ in range(3)]
        self.faqs = [FaqModel() for _ in range(3)]
        self.documents = [DocumentModel() for _ in range(3)]
        self.tasks: list[str] = []
        self.refused: set[str] = set()
        self.waited = 0
        self.serial = 0
        self.overlaps_before = self.stack.overlaps()

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def _accept(self, answer: httpx.Response) -> str:
        task_id = _accepted(answer)
        self.tasks.append(task_id)
        self.waited += "waits its turn" in answer.json()["message"]
        return task_id

    @initialize(who=CUSTOMER)
    def import_starts(self, who: int) -> None:
        # One customer's import: more writes at once than its bound lets queue.
        for item in ("i1", "i2", "i3", "i1", "i2"):
            self.es_upsert(who, item, embed=True)

    @rule(who=CUSTOMER, item=ITEMS, embed=st.booleans())
    def es_upsert(self, who: int, item: str, embed: bool) -> None:
        data = {"n": self._next()}
        body = {"customer_id": self.customers[who], "data": data, "with_embedding": embed}
        self._accept(self.stack.api.put(f"/api/v1/products/{item}", json=body))
        self.catalog[who].upsert(item, data, None)

    @rule(who=CUSTOMER, items=st.lists(ITEMS, min_size=1, max_size=3, unique=True))
    def es_bulk_upsert(self, who: int, items: list[str]) -> None:
        datas = {i: {"n": self._next()} for i in items}
        sent = [{"id": i, "data": d} for i, d in datas.items()]
        body = {"customer_id": self.customers[who], "items": sent, "with_embedding": True}
        self._accept(self.stack.api.post("/api/v1/products/bulk-upsert", json=body))
        for item, data in datas.items():
            self.catalog[who].upsert(item, data, None)

    @rule(who=CUSTOMER, item=ITEMS)
    def es_delete(self, who: int, item: str) -> None:
        params = {"customer_id": self.customers[who]}
        self._accept(self.stack.api.delete(f"/api/v1/products/{item}", params=params))
        self.catalog[who].delete(item, None)

    @rule(who=CUSTOMER)
    def es_delete_all(self, who: int) -> None:
        params = {"customer_id": self.customers[who]}
        self._accept(self.stack.api.delete("/api/v1/products", params=params))
        self.catalog[who].delete_all()

    @rule(who=CUSTOMER, faq=FAQS, create=st.booleans())
    def faq_write(self, who: int, faq: str, create: bool) -> None:
        customer = self.customers[who]
        answer = f"answer {self._next()}"
        if create:
            form = {"customer_id": customer, "faq_id": faq, "question": "q", "answer": answer}
            task_id = self._accept(self.stack.api.post("/api/v1/mobile-faq", data=form))
            applied = self.faqs[who].create(faq, answer)
        else:
            form = {"customer_id": customer, "answer": answer}
            task_id = self._accept(self.stack.api.put(f"/api/v1/mobile-faq/{faq}", data=form))
            applied = self.faqs[who].update(faq, answer)
        if not applied:
            self.refused.add(task_id)

    @rule(who=CUSTOMER)
    def faq_delete_all(self, who: int) -> None:
        params = {"customer_id": self.customers[who]}
        self._accept(self.stack.api.delete("/api/v1/mobile-faqs", params=params))
        self.faqs[who].delete_all()

    @rule(who=CUSTOMER, source=st.sampled_from(["s1", "s2", None]))
    def doc_upload(self, who: int, source: str | None) -> None:
        title = f"doc {self._next()}"
        body: dict[str, Any] = {"customer_id": self.customers[who], "title": title, "text": title}
        if source is not None:
            body["source"] = source
        self._accept(self.stack.api.post("/api/v1/documents/upload-text", json=body))
        self.documents[who].upload(source, title)

    @rule(who=CUSTOMER)
    def doc_delete_all(self, who: int) -> None:
        params = {"customer_id": self.customers[who]}
        self._accept(self.stack.api.delete("/api/v1/documents/delete-all", params=params))
        self.documents[who].delete_all()

    @rule(
        downstream=st.sampled_from(["es", "chatbot"]),
        mode=st.sampled_from(["error", "timeout", "slow"]),
        seconds=st.floats(0.3, 1.5),
    )
    def downstream_fails(self, downstream: str, mode: str, seconds: float) -> None:
        self.stack.fail(downstream, mode, seconds, slow_s=0.8)

    def teardown(self) -> None:
        rows = self.stack.settled(self.tasks, 90, ", ".join(self.customers))
        if not rows:
            return
        FairOrderingMachine.waited_total += self.waited
        failed = {r.task_id for r in rows if r.status == "failed"}
        assert failed == self.refused, {r.task_id: r.error_message for r in rows if r.is_finished}
        for who, customer in enumerate(self.customers):
            self.stack.assert_holds(
                customer, self.catalog[who], self.faqs[who], self.documents[who]
            )
        assert self.stack.overlaps() == self.overlaps_before, "two deliveries overlapped"

    waited_total: ClassVar[int] = 0


def test_each_customers_writes_take_effect_in_acceptance_order_with_fair_share_on(
    stack: ModelStack, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen = os.environ.get("FAIR_MODEL_SEED")
    run_seed = int(chosen) if chosen else random.SystemRandom().randrange(2**32)
    with capsys.disabled():
        print(f"\nfair-share model: FAIR_MODEL_SEED={run_seed} examples={EXAMPLES} steps={STEPS}")
    FairOrderingMachine.stack = stack
    run = get_state_machine_test(
        FairOrderingMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    seed(run_seed)(run)()
    # Fair share was in play: writes past their customer's bound waited for their turn.
    assert FairOrderingMachine.waited_total > 0
