"""A tracked message with no task-log row is parked for an operator, never run.

Such a message can come from a restored broker backup, a promoted asynchronous replica of
the task log (the row was lost, the message was not) or a hand-made publish. Running it
would skip everything acceptance does (its place in acceptance order, its ordering scope,
its sealed secrets, the caller-version check), so it is recorded as failed with reason
`unknown_message`, shown in the failed list, and left for an operator to redrive or drop.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from services.core.celery_app import make_celery_app
from tests.support.chatbot import ChatBench, chat_bench
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatBench]:
    with chat_bench(tmp_path_factory.mktemp("unknown")) as started:
        yield started


def test_a_message_without_a_row_is_parked_and_shown_not_run(bench: ChatBench) -> None:
    customer, task_id = f"unk-{uuid.uuid4().hex[:10]}", str(uuid.uuid4())
    payload = {"customer_id": customer, "faq_id": "f1", "question": "q", "answer": "a"}
    make_celery_app(bench.settings).send_task(
        "faq_create", kwargs={"payload": payload}, task_id=task_id, queue="http"
    )
    row = bench.finished(task_id, 30)
    assert (row.status, row.failure_reason) == ("failed", "unknown_message")
    assert row.customer_id == customer and row.attempts == 0
    failed = bench.api.get("/api/v1/tasks/failed", params={"customer_id": customer}).json()
    assert [t["task_id"] for t in failed["items"]] == [task_id]
    assert bench.upstream("/v1/faqs", customer_id=customer)["items"] == []
    # A second delivery of the same message finds the parked row and does nothing either.
    make_celery_app(bench.settings).send_task(
        "faq_create", kwargs={"payload": payload}, task_id=task_id, queue="http"
    )
    wait_until(
        lambda: any(
            task_id in line and "duplicate delivery" in line
            for line in bench.worker.log().splitlines()
        ),
        20,
        what="the second delivery to be dropped",
    )
    assert bench.upstream("/v1/faqs", customer_id=customer)["items"] == []
