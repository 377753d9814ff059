"""A redrive never undoes a later write, and a write ChatbotMobile refused can be redriven.

A redrive of a ChatbotMobile write is a new write (new place in acceptance order, its own
Idempotency-Key), refused with 409 once a write of the same entity accepted after the
original has taken effect or may still take effect. Each test is a sequence that used to
undo a later write or could never land.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.chatbot import ChatBench, chat_bench
from tests.support.flow import accepted
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatBench]:
    with chat_bench(
        tmp_path_factory.mktemp("redrive-order"),
        # One transient failure fails a task for good; no breaker holding the others back.
        worker_env={"HTTP_MAX_RETRIES": "0", "BREAKER_ENABLED": "false"},
    ) as started:
        yield started


def _customer() -> str:
    return f"rdo-{uuid.uuid4().hex[:10]}"


def _failed_create(bench: ChatBench, customer: str, answer: str) -> str:
    """A create of FAQ f1 that failed for good (ChatbotMobile unavailable)."""
    bench.standin.fault("error", 3.0, status=503, match={"method": "POST", "body_contains": answer})
    create = accepted(
        bench.api.post(
            "/api/v1/mobile-faq",
            data={"customer_id": customer, "faq_id": "f1", "question": "q", "answer": answer},
        )
    )
    row = bench.finished(create, 30)
    assert row.status == "failed", row.status
    bench.standin.clear_fault()
    return create


def _faqs(bench: ChatBench, customer: str) -> dict[str, str]:
    items = bench.upstream("/v1/faqs", customer_id=customer)["items"]
    return {f["faq_id"]: f["answer"] for f in items}


def test_a_redrive_is_refused_while_a_later_delete_of_the_faq_is_in_flight(
    bench: ChatBench,
) -> None:
    customer = _customer()
    create = _failed_create(bench, customer, f"a-{uuid.uuid4().hex}")
    # The later delete is applied by ChatbotMobile but its answer is late: it is unfinished.
    bench.standin.fault("timeout", 4.0, delay_s=2.5, match={"method": "DELETE"})
    delete = accepted(bench.api.delete("/api/v1/mobile-faq/f1", params={"customer_id": customer}))
    wait_until(
        lambda: (
            (row := bench.repo.get_by_task_id(delete)) is not None and row.status == "processing"
        ),
        20,
        what="the delete to run",
    )
    redrive = bench.api.post(f"/api/v1/tasks/{create}/retry")
    assert redrive.status_code == 409, redrive.text
    assert delete in redrive.json()["detail"]
    bench.finished(delete, 30)
    bench.standin.clear_fault()
    assert _faqs(bench, customer) == {}


def test_a_redrive_of_an_update_is_refused_once_a_later_update_landed(bench: ChatBench) -> None:
    customer = _customer()
    bench.succeeded(
        bench.api.post(
            "/api/v1/mobile-faq",
            data={"customer_id": customer, "faq_id": "f1", "question": "q", "answer": "zero"},
        )
    )
    first = f"first-{uuid.uuid4().hex}"
    bench.standin.fault("error", 3.0, status=503, match={"method": "PUT", "body_contains": first})
    failed = accepted(
        bench.api.put("/api/v1/mobile-faq/f1", data={"customer_id": customer, "answer": first})
    )
    assert bench.finished(failed, 30).status == "failed"
    bench.standin.clear_fault()
    bench.succeeded(
        bench.api.put("/api/v1/mobile-faq/f1", data={"customer_id": customer, "answer": "second"})
    )
    redrive = bench.api.post(f"/api/v1/tasks/{failed}/retry")
    assert redrive.status_code == 409, redrive.text
    assert _faqs(bench, customer) == {"f1": "second"}


def test_an_update_refused_while_its_create_was_missing_lands_when_both_are_redriven(
    bench: ChatBench,
) -> None:
    customer = _customer()
    create = _failed_create(bench, customer, f"c-{uuid.uuid4().hex}")
    # Runs after the failed create: ChatbotMobile answers 404 and remembers that answer
    # under the update's Idempotency-Key.
    update = accepted(
        bench.api.put("/api/v1/mobile-faq/f1", data={"customer_id": customer, "answer": "new"})
    )
    refused = bench.finished(update, 30)
    assert refused.status == "failed" and "404" in (refused.error_message or "")
    bench.succeeded(bench.api.post(f"/api/v1/tasks/{create}/retry"))
    # The update's redrive is a new write with a key of its own: the remembered 404 is not
    # its answer.
    redriven = bench.succeeded(bench.api.post(f"/api/v1/tasks/{update}/retry"))
    assert redriven.retry_of == update and redriven.seq > refused.seq
    assert _faqs(bench, customer) == {"f1": "new"}
