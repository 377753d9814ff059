"""Per-entity ordering of ChatbotMobile writes, which carry no versions.

Writes of one FAQ, and document writes of one customer and source, take effect in
acceptance order whatever fails and retries: a later write waits in the task log while an
earlier one it meets is unfinished. Each test fails one write for a while (a stand-in fault
that matches only its request) and accepts a later one meanwhile; without the ordering the
later write lands first and the earlier one undoes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.chatbot import ChatBench, chat_bench
from tests.support.flow import accepted
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatBench]:
    # No breaker: the failing write must not hold back the others for a reason of its own.
    with chat_bench(
        tmp_path_factory.mktemp("chat-order"), worker_env={"BREAKER_ENABLED": "false"}
    ) as started:
        yield started


def _customer() -> str:
    return f"order-{uuid.uuid4().hex[:10]}"


def _waiting_for(bench: ChatBench, task_id: str) -> dict[str, Any]:
    """The `waiting` part of a task's status once it waits in the log."""

    def held() -> dict[str, Any] | None:
        body = bench.api.get(f"/api/v1/tasks/{task_id}/status").json()
        waiting: dict[str, Any] | None = body.get("waiting")
        return waiting

    found: dict[str, Any] = wait_until(held, 20, what=f"task {task_id} to wait")
    return found


def _fail_for_a_while(bench: ChatBench, seconds: float, **match: str) -> None:
    bench.standin.fault("error", seconds, status=503, match=match)


def test_a_delete_accepted_while_the_create_retries_takes_effect_after_it(
    bench: ChatBench,
) -> None:
    customer, question = _customer(), f"question {uuid.uuid4().hex}"
    _fail_for_a_while(bench, 3.0, method="POST", path_prefix="/v1/faqs", body_contains=question)
    create = accepted(
        bench.api.post(
            "/api/v1/mobile-faq",
            data={"customer_id": customer, "faq_id": "f1", "question": question, "answer": "a"},
        )
    )
    delete = accepted(bench.api.delete("/api/v1/mobile-faq/f1", params={"customer_id": customer}))
    waiting = _waiting_for(bench, delete)
    assert waiting["reason"] == "order" and waiting["waiting_for"] == create
    bench.finished(create, 30)
    # The delete found the FAQ (it ran after the create): not the "not_found" it would get
    # running first.
    row = bench.finished(delete, 30)
    assert row.status == "success" and row.result == {"deleted": 1}
    assert bench.upstream("/v1/faqs", customer_id=customer)["items"] == []


def test_two_updates_of_one_faq_apply_in_acceptance_order(bench: ChatBench) -> None:
    customer = _customer()
    bench.succeeded(
        bench.api.post(
            "/api/v1/mobile-faq",
            data={"customer_id": customer, "faq_id": "f1", "question": "q", "answer": "zero"},
        )
    )
    _fail_for_a_while(bench, 3.0, method="PUT", body_contains="first-answer")
    first = accepted(
        bench.api.put(
            "/api/v1/mobile-faq/f1", data={"customer_id": customer, "answer": "first-answer"}
        )
    )
    second = accepted(
        bench.api.put(
            "/api/v1/mobile-faq/f1", data={"customer_id": customer, "answer": "second-answer"}
        )
    )
    assert _waiting_for(bench, second)["waiting_for"] == first
    for task_id in (first, second):
        assert bench.finished(task_id, 30).status == "success"
    [faq] = bench.upstream("/v1/faqs", customer_id=customer)["items"]
    assert faq["answer"] == "second-answer"


@pytest.mark.parametrize("wipe", ["delete-all", "delete-by-source"])
def test_an_upload_retried_after_a_later_delete_does_not_survive_it(
    bench: ChatBench, wipe: str
) -> None:
    customer, text = _customer(), f"text {uuid.uuid4().hex}"
    _fail_for_a_while(bench, 3.0, path_prefix="/v1/documents/text", body_contains=text)
    upload = accepted(
        bench.api.post(
            "/api/v1/documents/upload-text",
            json={"customer_id": customer, "text": text, "source": "site"},
        )
    )
    params = {"customer_id": customer}
    if wipe == "delete-by-source":
        params["source"] = "site"
    delete = accepted(bench.api.delete(f"/api/v1/documents/{wipe}", params=params))
    assert _waiting_for(bench, delete)["waiting_for"] == upload
    assert bench.finished(upload, 30).status == "success"
    assert bench.finished(delete, 30).status == "success"
    assert bench.upstream("/v1/documents", customer_id=customer)["items"] == []


def test_writes_of_other_sources_do_not_wait(bench: ChatBench) -> None:
    customer, text = _customer(), f"text {uuid.uuid4().hex}"
    _fail_for_a_while(bench, 4.0, path_prefix="/v1/documents/text", body_contains=text)
    slow = accepted(
        bench.api.post(
            "/api/v1/documents/upload-text",
            json={"customer_id": customer, "text": text, "source": "site"},
        )
    )
    other = bench.succeeded(
        bench.api.post(
            "/api/v1/documents/upload-text",
            json={"customer_id": customer, "text": "other", "source": "manual"},
        ),
        timeout_s=20,
    )
    earlier = bench.repo.get_by_task_id(slow)
    assert earlier is not None and not earlier.is_finished  # the other one did not wait for it
    assert other.finished_at is not None
    assert bench.finished(slow, 30).status == "success"


def test_an_earlier_write_that_failed_for_good_does_not_block_later_ones(
    bench: ChatBench,
) -> None:
    customer, text = _customer(), f"text {uuid.uuid4().hex}"
    # Refused for good (a 400 is permanent): the upload fails, and what waited for it runs.
    bench.standin.fault(
        "error", 3.0, status=400, match={"path_prefix": "/v1/documents", "body_contains": text}
    )
    upload = accepted(
        bench.api.post(
            "/api/v1/documents/upload-text",
            json={"customer_id": customer, "text": text, "source": "site"},
        )
    )
    later = bench.api.post(
        "/api/v1/documents/upload-text",
        json={"customer_id": customer, "text": "later", "title": "later", "source": "site"},
    )
    assert bench.finished(upload, 30).status == "failed"
    assert bench.succeeded(later, timeout_s=30).status == "success"
    [doc] = bench.upstream("/v1/documents", customer_id=customer)["items"]
    assert doc["title"] == "later"


def _upload_without_source(
    bench: ChatBench, customer: str, how: str, marker: str
) -> tuple[str, str]:
    """An upload that names no source; the source ChatbotMobile files it under."""
    if how == "text":
        answer = bench.api.post(
            "/api/v1/documents/upload-text",
            json={"customer_id": customer, "text": marker, "title": f"title {marker}"},
        )
        return accepted(answer), f"text:title {marker}"
    if how == "url":
        url = f"https://example.com/{marker}"
        answer = bench.api.post(
            "/api/v1/documents/upload-url", json={"customer_id": customer, "url": url}
        )
        return accepted(answer), f"url:{url}"
    answer = bench.api.post(
        "/api/v1/documents/upload-file",
        data={"customer_id": customer},
        files={"file": (f"{marker}.txt", marker.encode(), "text/plain")},
    )
    return accepted(answer), f"file:{marker}.txt"


@pytest.mark.parametrize("how", ["text", "url", "file"])
def test_a_delete_of_the_default_source_waits_for_the_upload_filed_under_it(
    bench: ChatBench, how: str
) -> None:
    customer, marker = _customer(), f"m{uuid.uuid4().hex[:12]}"
    _fail_for_a_while(bench, 3.0, path_prefix="/v1/documents", body_contains=marker)
    upload, source = _upload_without_source(bench, customer, how, marker)
    delete = accepted(
        bench.api.delete(
            "/api/v1/documents/delete-by-source", params={"customer_id": customer, "source": source}
        )
    )
    assert _waiting_for(bench, delete)["waiting_for"] == upload
    assert bench.finished(upload, 30).status == "success"
    assert bench.finished(delete, 30).status == "success"
    assert bench.upstream("/v1/documents", customer_id=customer)["items"] == []
