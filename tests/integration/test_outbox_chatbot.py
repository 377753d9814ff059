"""ChatbotMobile writes queued inside a caller's transaction, end to end: the caller's
database (the task log) -> broker -> http-worker -> ChatbotMobile stand-in.

Every entry point of `services.core.chatbot.writes` joins a transaction; a rollback leaves
nothing anywhere; and writes of one FAQ take effect in commit order, not call order.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from services.core.chatbot import writes
from services.core.chatbot.writes import ChatbotWrites, Upload
from services.core.tasklog.models import TaskLog
from tests.support.chatbot import ChatBench, chat_bench
from tests.support.flow import enqueuer
from tests.support.outbox import Callers, callers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatBench]:
    with chat_bench(tmp_path_factory.mktemp("outbox-chat")) as started:
        yield started


@pytest.fixture(scope="module")
def db(bench: ChatBench) -> Iterator[Callers]:
    """The caller: an application whose database is the bench's task log."""
    with callers(bench.settings.database_url) as made:
        yield made


@pytest.fixture(scope="module", autouse=True)
def entry_points(bench: ChatBench) -> Iterator[None]:
    """The module's functions (`writes.faq_create`, ...) on the bench's broker and storage."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writes, "_default", ChatbotWrites(bench.settings, enqueuer(bench.settings)))
        yield


def _customer() -> str:
    return f"cust-{uuid.uuid4().hex[:10]}"


def _succeeded(bench: ChatBench, queued: dict[str, Any]) -> TaskLog:
    row = bench.finished(queued["task_id"])
    assert row.status == "success", (row.task_name, row.error_message)
    return row


def test_every_entry_point_joins_the_callers_transaction(bench: ChatBench, db: Callers) -> None:
    customer = _customer()
    pdf = b"%PDF-1.4 manual " + os.urandom(500)
    csv = b"question,answer\nWhere?,Here\nWhen?,Now\n"
    caller = db.open("session")
    caller.set_name(customer, "catalogue v2")
    first = [
        caller.write(
            lambda s: writes.doc_upload_text(customer, "Hours: 9-17", source="site", session=s)
        ),
        caller.write(
            lambda s: writes.doc_upload_file(
                customer, Upload(pdf, "manual.pdf", "application/pdf"), source="manuals", session=s
            )
        ),
        caller.write(lambda s: writes.doc_upload_url(customer, "https://example.com/x", session=s)),
        caller.write(
            lambda s: writes.faq_create(
                customer,
                "Price?",
                "10",
                faq_id="price",
                files=[Upload(b"\x89PNG" + os.urandom(50), "card.png", "image/png")],
                session=s,
            )
        ),
        caller.write(
            lambda s: writes.faq_import(customer, Upload(csv, "faqs.csv", "text/csv"), session=s)
        ),
    ]
    assert bench.repo.get_by_task_id(first[0]["task_id"]) is None  # not before the commit
    caller.commit()
    for queued in first:
        _succeeded(bench, queued)
    faqs = {f["faq_id"]: f for f in bench.upstream("/v1/faqs", customer_id=customer)["items"]}
    assert faqs["price"]["answer"] == "10" and len(faqs["price"]["attachments"]) == 1
    assert len(faqs) == 3
    caller = db.open("async_connection")
    second = [
        caller.write(lambda s: writes.faq_update(customer, "price", answer="12", session=s)),
        caller.write(lambda s: writes.faq_delete(customer, "price", session=s)),
        caller.write(lambda s: writes.doc_delete_by_source(customer, "site", session=s)),
        caller.write(lambda s: writes.doc_trigger_reindex(customer, session=s)),
    ]
    caller.commit()
    assert [_succeeded(bench, q).result for q in second][2] == {"deleted": 1}
    assert "price" not in {
        f["faq_id"] for f in bench.upstream("/v1/faqs", customer_id=customer)["items"]
    }
    caller = db.open("async_session")
    last = [
        caller.write(lambda s: writes.doc_delete_all(customer, session=s)),
        caller.write(lambda s: writes.faq_delete_all(customer, session=s)),
    ]
    caller.commit()
    for queued in last:
        _succeeded(bench, queued)
    assert bench.upstream("/v1/faqs", customer_id=customer)["total"] == 0
    assert bench.upstream("/v1/documents", customer_id=customer)["total"] == 0


def test_a_rolled_back_faq_leaves_nothing_in_chatbotmobile(bench: ChatBench, db: Callers) -> None:
    customer = _customer()
    caller = db.open("async_session")
    gone = caller.write(
        lambda s: writes.faq_create(customer, "Gone?", "yes", faq_id="gone", session=s)
    )
    caller.rollback()
    caller = db.open("connection")
    kept = caller.write(
        lambda s: writes.faq_create(customer, "Kept?", "yes", faq_id="kept", session=s)
    )
    caller.commit()
    _succeeded(bench, kept)
    assert bench.repo.get_by_task_id(gone["task_id"]) is None
    faqs = bench.upstream("/v1/faqs", customer_id=customer)["items"]
    assert [f["faq_id"] for f in faqs] == ["kept"]
    with bench.repo.sessions() as session:
        rows = session.scalars(select(TaskLog.task_id).where(TaskLog.customer_id == customer))
        assert list(rows) == [kept["task_id"]]


def test_updates_of_one_faq_take_effect_in_commit_order(bench: ChatBench, db: Callers) -> None:
    customer = _customer()
    created = db.runner.run(writes.faq_create(customer, "Hours?", "unknown", faq_id="hours"))
    _succeeded(bench, created)
    first, second = db.open("session"), db.open("async_session")
    one = first.write(
        lambda s: writes.faq_update(customer, "hours", answer="called first", session=s)
    )
    two = second.write(
        lambda s: writes.faq_update(customer, "hours", answer="called second", session=s)
    )
    second.commit()
    first.commit()
    for queued in (one, two):
        _succeeded(bench, queued)
    [faq] = bench.upstream("/v1/faqs", customer_id=customer)["items"]
    assert faq["answer"] == "called first"
