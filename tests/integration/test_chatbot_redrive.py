"""A manual retry of a ChatbotMobile write answers for what the original did.

It is a new task in the log (the history stays) and a new write (a later place in acceptance
order, an Idempotency-Key of its own), but it sends the original's key first: a write the
original landed is answered from ChatbotMobile's memory instead of applied twice, and an
import resumes after the chunks already created.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest

from tests.support.chatbot import ChatBench, chat_bench

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatBench]:
    with chat_bench(
        tmp_path_factory.mktemp("chat-redrive"),
        # No retry at all, and a short read timeout: one late answer fails a task for good.
        worker_env={"HTTP_MAX_RETRIES": "0", "CHATBOT_READ_TIMEOUT_S": "1"},
        settings_update={"faq_import_chunk_rows": 2},
    ) as started:
        yield started


def _customer() -> str:
    return f"redrive-{uuid.uuid4().hex[:10]}"


def test_a_retried_create_that_was_applied_replays_instead_of_conflicting(
    bench: ChatBench,
) -> None:
    customer, question = _customer(), f"q {uuid.uuid4().hex}"
    # Applied, but the answer comes after the worker stopped waiting: the task fails.
    bench.standin.fault(
        "timeout", 3.0, delay_s=2.0, match={"path_prefix": "/v1/faqs", "body_contains": question}
    )
    answer = bench.api.post(
        "/api/v1/mobile-faq",
        data={"customer_id": customer, "faq_id": "f1", "question": question, "answer": "a"},
    )
    failed = bench.finished(answer.json()["task_id"], 30)
    assert (failed.status, failed.failure_reason) == ("failed", "max_retries_exhausted")
    bench.standin.clear_fault()
    assert [f["faq_id"] for f in bench.upstream("/v1/faqs", customer_id=customer)["items"]] == [
        "f1"
    ]
    # The retry sends the failed task's Idempotency-Key first: ChatbotMobile answers as it did
    # the first time instead of refusing a second create of f1 (409).
    retried = bench.succeeded(bench.api.post(f"/api/v1/tasks/{failed.task_id}/retry"))
    assert retried.result is not None and retried.result["faq_id"] == "f1"
    assert retried.retry_of == failed.task_id and retried.seq > failed.seq
    assert retried.origin_seq == failed.seq
    assert len(bench.upstream("/v1/faqs", customer_id=customer)["items"]) == 1


def test_a_retried_import_skips_the_rows_already_created(bench: ChatBench) -> None:
    customer, stem = _customer(), uuid.uuid4().hex[:8]
    rows = [f"{stem} question {n}" for n in range(6)]
    csv = "question,answer\n" + "".join(f"{q},answer\n" for q in rows)
    # The third chunk (rows 4 and 5) is refused for good while the first two are created.
    bench.standin.fault(
        "error",
        5.0,
        status=400,
        match={"path_prefix": "/v1/faqs/import", "body_contains": rows[4]},
    )
    answer = bench.api.post(
        "/api/v1/mobile-faq/import",
        data={"customer_id": customer},
        files={"file": ("faqs.csv", io.BytesIO(csv.encode()), "text/csv")},
    )
    failed = bench.finished(answer.json()["task_id"], 30)
    assert (failed.status, failed.checkpoint) == ("failed", {"chunks_done": 2, "created": 4})
    bench.standin.clear_fault()
    retried = bench.succeeded(bench.api.post(f"/api/v1/tasks/{failed.task_id}/retry"))
    assert retried.result == {"rows": 6, "created": 6, "chunks": 3}
    stored = [f["question"] for f in bench.upstream("/v1/faqs", customer_id=customer)["items"]]
    assert sorted(stored) == sorted(rows)
