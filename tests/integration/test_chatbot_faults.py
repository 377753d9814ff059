"""ChatbotMobile writes survive 500s and then refused connections (stand-in faults)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.chatbot import ChatBench, chat_bench
from tests.support.flow import all_finished
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow
PHASE_S = 30


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatBench]:
    env = {"RETRY_BACKOFF_BASE_S": "1", "RETRY_BACKOFF_MAX_S": "15"}
    with chat_bench(tmp_path_factory.mktemp("chat-faults"), worker_env=env) as started:
        yield started


def test_300_mixed_writes_survive_500s_then_a_refusing_service(bench: ChatBench) -> None:
    customer = f"cust-{uuid.uuid4().hex[:10]}"
    writes = [("doc", f"title-{n}") for n in range(150)] + [("faq", f"faq-{n}") for n in range(150)]
    random.Random(4).shuffle(writes)
    bench.standin.fault("error", PHASE_S, status=500)
    started = time.monotonic()
    task_ids = []
    for kind, name in writes:
        if kind == "doc":
            answer = bench.api.post(
                "/api/v1/documents/upload-text",
                json={"customer_id": customer, "title": name, "text": f"text of {name}"},
            )
        else:
            answer = bench.api.post(
                "/api/v1/mobile-faq",
                data={"customer_id": customer, "faq_id": name, "question": name, "answer": "a"},
            )
        assert answer.status_code == 202, answer.text
        task_ids.append(answer.json()["task_id"])
    assert bench.standin.current_fault() is not None, "the 500s ended before all writes were sent"
    wait_until(lambda: bench.standin.current_fault() is None, PHASE_S + 10, what="500s to end")
    bench.standin.fault("down", PHASE_S)

    rows = wait_until(
        lambda: all_finished(bench.repo, task_ids),
        2 * PHASE_S + 120,
        interval_s=2,
        what="300 tasks",
    )
    assert time.monotonic() - started >= 2 * PHASE_S * 0.9
    assert {r.status for r in rows} == {"success"}
    # Some tasks failed and were retried; once the breaker opened, the rest were parked, which
    # spends no retry.
    assert max(r.retry_count for r in rows) >= 1

    documents = bench.upstream("/v1/documents", customer_id=customer, page_size=500)
    titles = sorted(d["title"] for d in documents["items"])
    assert titles == sorted(name for kind, name in writes if kind == "doc")
    faqs = bench.upstream("/v1/faqs", customer_id=customer, page_size=500)
    assert sorted(f["faq_id"] for f in faqs["items"]) == sorted(
        name for kind, name in writes if kind == "faq"
    )
    counts = bench.standin.stats()["by_customer"][customer]
    assert (counts["documents"], counts["faqs"]) == (150, 150)
