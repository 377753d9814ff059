"""The ChatbotMobile stand-in over real HTTP with httpx, checked against its contract."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.contract import CONTRACTS, Contract, Operation
from tests.support.fileserver import FileServer
from tests.support.procs import wait_until
from tests.support.standins import Standin

TOKEN = "test-token"
CUSTOMER = "cust-a"
OTHER = "cust-b"
CONTRACT = Contract(CONTRACTS / "chatbotmobile.openapi.yaml")
REPLAYED = "Idempotent-Replayed"


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    server = Standin("chatbotmobile", tmp_path_factory.mktemp("chatbot-standin")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server = FileServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean(standin: Standin, files: FileServer) -> None:
    standin.clear_fault()
    standin.reset()
    files.files.clear()
    files.downloads.clear()
    files.delay_s = 0.0


@pytest.fixture
def api(standin: Standin) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=standin.url, headers=headers, timeout=5, trust_env=False) as client:
        yield client


def body_of(**fields: Any) -> dict[str, Any]:
    """The fields of a request of CUSTOMER (its JSON body or its query)."""
    return {"customer_id": CUSTOMER, **fields}


def send(
    api: httpx.Client,
    method: str,
    path: str,
    *,
    key: str | None = None,
    json: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    timeout: float = 5,
) -> httpx.Response:
    """A write with its Idempotency-Key (a fresh one unless given)."""
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return api.request(method, path, headers=headers, json=json, params=params, timeout=timeout)


def post(api: httpx.Client, path: str, *, key: str | None = None, **fields: Any) -> httpx.Response:
    """A POST of CUSTOMER."""
    return send(api, "POST", path, key=key, json=body_of(**fields))


def delete(
    api: httpx.Client, path: str, *, key: str | None = None, **params: Any
) -> httpx.Response:
    """A DELETE of CUSTOMER."""
    return send(api, "DELETE", path, key=key, params=body_of(**params))


def ok(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["message"]
    return error["code"]


def get(api: httpx.Client, path: str, **params: Any) -> Any:
    return ok(api.get(path, params=body_of(**params)), 200)


def faq(faq_id: str, **fields: Any) -> dict[str, Any]:
    return {"faq_id": faq_id, "question": "Q?", "answer": "A.", **fields}


def export_rows(api: httpx.Client) -> list[list[str]]:
    response = api.get("/v1/faqs/export", params=body_of())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.text)))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- auth and validation -------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer", "Basic dXNlcjpwdw==", "token-only"])
def test_requests_without_a_bearer_token_are_401(standin: Standin, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    with httpx.Client(base_url=standin.url, headers=headers, trust_env=False) as anonymous:
        response = anonymous.get("/v1/documents", params=body_of())
    assert error_code(response, 401) == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_only_configured_tokens_are_accepted(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("chatbot-tokens")
    standin = Standin("chatbotmobile", path, "--token", "one", "--token", "two").start()
    try:
        with httpx.Client(base_url=standin.url, trust_env=False) as client:
            answers = {
                token: client.get(
                    "/v1/faqs", params=body_of(), headers={"Authorization": f"Bearer {token}"}
                ).status_code
                for token in ("one", "two", "three")
            }
        assert answers == {"one": 200, "two": 200, "three": 401}
    finally:
        standin.stop()


FILE = {"file_url": "http://h/f", "filename": "f"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/documents/text", body_of()),
        ("/v1/documents/text", body_of(text="")),
        ("/v1/documents/text", body_of(text="x", title=7)),
        ("/v1/documents/text", body_of(text="x", title=None)),
        ("/v1/documents/text", body_of(text="x", colour="red")),
        ("/v1/documents/text", {"text": "x"}),
        ("/v1/documents/file", body_of(file_url="http://h/f")),
        ("/v1/documents/file", body_of(file_url="f.pdf", filename="f")),
        ("/v1/documents/file", body_of(**FILE, size="9")),
        ("/v1/documents/file", body_of(**FILE, sha256="ab")),
        ("/v1/documents/url", body_of(url="not a url")),
        ("/v1/graphrag/reindex", {"customer_id": 42}),
        ("/v1/faqs", body_of(faq_id="f1", question="Q?")),
        ("/v1/faqs", body_of(**faq("f1", tags="a;b"))),
        ("/v1/faqs", body_of(**faq("f1", attachments=[{"file_url": "http://h/a"}]))),
        ("/v1/faqs/import", body_of()),
        ("/v1/faqs/import", body_of(rows=[{"question": "q"}])),
        ("/v1/faqs/import", body_of(rows=[{"question": "q", "answer": 1}])),
        ("/v1/faqs/import", body_of(rows=[{"question": "q", "answer": "a"}] * 1001)),
    ],
)
def test_requests_outside_the_contract_are_422(
    api: httpx.Client, standin: Standin, path: str, body: dict[str, Any]
) -> None:
    assert error_code(send(api, "POST", path, json=body), 422) == "validation_error"
    assert standin.stats()["writes_applied"] == 0


def test_bad_json_queries_and_updates_are_422(api: httpx.Client) -> None:
    raw = api.post(
        "/v1/documents/text",
        content=b"{not json",
        headers={"Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert error_code(raw, 422) == "validation_error"
    assert error_code(api.get("/v1/documents"), 422) == "validation_error"
    for params in ({"page": "0"}, {"page_size": "501"}, {"page": "two"}):
        assert error_code(api.get("/v1/faqs", params=body_of(**params)), 422) == "validation_error"
    assert error_code(delete(api, "/v1/documents/by-source"), 422) == "validation_error"
    ok(post(api, "/v1/faqs", **faq("f1")))
    for change in ({"faq_id": "f2"}, {"answer": ""}):
        response = send(api, "PUT", "/v1/faqs/f1", json=body_of(**change))
        assert error_code(response, 422) == "validation_error"


def test_writes_without_an_idempotency_key_are_400(api: httpx.Client, standin: Standin) -> None:
    response = api.post("/v1/documents/text", json=body_of(text="x"))
    assert error_code(response, 400) == "idempotency_key_missing"
    too_long = post(api, "/v1/documents/text", key="k" * 256, text="x")
    assert error_code(too_long, 422) == "validation_error"
    assert standin.stats()["writes_applied"] == 0


# --- documents ------------------------------------------------------------------------------


def test_documents_are_listed_newest_first_with_sources_and_originals(
    api: httpx.Client, files: FileServer
) -> None:
    text = ok(post(api, "/v1/documents/text", text="body", title="Intro"))
    manual = ok(post(api, "/v1/documents/text", text="more", source="manual"))
    data = b"%PDF-1.7 tiny"
    url = files.put("guide.pdf", data)
    file_doc = ok(post(api, "/v1/documents/file", file_url=url, filename="guide.pdf"))
    page = ok(post(api, "/v1/documents/url", url="https://example.com/faq"))

    assert (text["kind"], text["title"], text["source"]) == ("text", "Intro", "text:Intro")
    assert len(text["document_id"]) == 32 and text["created_at"].endswith("Z")
    assert manual["source"] == "manual"
    assert (file_doc["source"], file_doc["size"], file_doc["sha256"]) == (
        "file:guide.pdf",
        len(data),
        sha(data),
    )
    assert (page["kind"], page["source"]) == ("url", "url:https://example.com/faq")
    assert files.downloads == ["guide.pdf"]

    listed = get(api, "/v1/documents")
    assert listed == {"items": [page, file_doc, manual, text], "total": 4}
    assert get(api, "/v1/documents", page=2, page_size=3)["items"] == [text]
    assert get(api, "/v1/documents", customer_id=OTHER) == {"items": [], "total": 0}
    assert get(api, "/v1/documents/originals")["items"] == [
        {
            "document_id": file_doc["document_id"],
            "kind": "file",
            "filename": "guide.pdf",
            "size": len(data),
            "sha256": sha(data),
        },
        {"document_id": page["document_id"], "kind": "url", "url": "https://example.com/faq"},
    ]
    assert get(api, "/v1/documents/sources")["sources"] == [
        {"source": "file:guide.pdf", "documents": 1},
        {"source": "manual", "documents": 1},
        {"source": "text:Intro", "documents": 1},
        {"source": "url:https://example.com/faq", "documents": 1},
    ]


def test_delete_by_source_and_delete_all(api: httpx.Client, standin: Standin) -> None:
    for n in range(3):
        ok(post(api, "/v1/documents/text", text=f"chunk {n}", source="handbook"))
    ok(post(api, "/v1/documents/text", text="other", source="blog"))
    assert ok(delete(api, "/v1/documents/by-source", source="handbook"), 200) == {"deleted": 3}
    assert get(api, "/v1/documents/sources")["sources"] == [{"source": "blog", "documents": 1}]

    ok(post(api, "/v1/documents/text", text="x"))
    assert standin.stats()["by_customer"][CUSTOMER]["documents"] == 2
    assert ok(delete(api, "/v1/documents"), 200) == {"deleted": 2}
    assert get(api, "/v1/documents") == {"items": [], "total": 0}


def test_reindex_starts_a_job_counted_per_customer(api: httpx.Client, standin: Standin) -> None:
    job = ok(post(api, "/v1/graphrag/reindex"), 202)
    assert job["status"] and len(job["job_id"]) == 32
    assert ok(post(api, "/v1/graphrag/reindex", key="r1"), 202)["job_id"] != job["job_id"]
    assert post(api, "/v1/graphrag/reindex", key="r1").headers[REPLAYED] == "true"
    assert standin.stats()["by_customer"][CUSTOMER]["reindex"] == 2


# --- idempotency ----------------------------------------------------------------------------


def test_a_repeated_key_replays_the_first_answer_and_applies_once(
    api: httpx.Client, standin: Standin
) -> None:
    body = body_of(text="once", title="T")
    first = send(api, "POST", "/v1/documents/text", key="k1", json=body)
    # The same JSON object with its fields in another order is the same request.
    second = send(api, "POST", "/v1/documents/text", key="k1", json=dict(reversed(body.items())))

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert REPLAYED not in first.headers
    assert second.headers[REPLAYED] == "true"
    assert get(api, "/v1/documents")["total"] == 1
    stats = standin.stats()
    assert (stats["writes_applied"], stats["replays"]) == (1, 1)
    assert stats["by_customer"] == {CUSTOMER: {"documents": 1, "faqs": 0, "reindex": 0}}


def test_a_key_reused_for_another_request_is_422_and_keys_are_per_customer(
    api: httpx.Client, standin: Standin
) -> None:
    ok(post(api, "/v1/documents/text", key="k1", text="a"))
    changed = post(api, "/v1/documents/text", key="k1", text="b")
    assert error_code(changed, 422) == "idempotency_key_reused"
    elsewhere = post(api, "/v1/documents/url", key="k1", url="http://x/")
    assert error_code(elsewhere, 422) == "idempotency_key_reused"

    theirs = send(
        api, "POST", "/v1/documents/text", key="k1", json={"customer_id": OTHER, "text": "b"}
    )
    assert ok(theirs)["customer_id"] == OTHER and REPLAYED not in theirs.headers
    stats = standin.stats()
    assert stats["writes_applied"] == 2
    assert [stats["by_customer"][c]["documents"] for c in (CUSTOMER, OTHER)] == [1, 1]


def test_a_replayed_delete_deletes_nothing_new(api: httpx.Client) -> None:
    ok(post(api, "/v1/documents/text", text="a", source="s"))
    assert ok(delete(api, "/v1/documents/by-source", key="d1", source="s"), 200) == {"deleted": 1}
    ok(post(api, "/v1/documents/text", text="b", source="s"))
    replay = delete(api, "/v1/documents/by-source", key="d1", source="s")
    assert ok(replay, 200) == {"deleted": 1} and replay.headers[REPLAYED] == "true"
    assert get(api, "/v1/documents/sources")["sources"] == [{"source": "s", "documents": 1}]
    other_query = delete(api, "/v1/documents/by-source", key="d1", source="t")
    assert error_code(other_query, 422) == "idempotency_key_reused"


def test_a_concurrent_repeat_waits_for_the_first_and_replays_it(
    api: httpx.Client, files: FileServer, standin: Standin
) -> None:
    body = body_of(file_url=files.put("f.txt", b"slow"), filename="f.txt")
    files.delay_s = 0.3  # the first request is still downloading when the repeat arrives
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda _: send(api, "POST", "/v1/documents/file", key="k1", json=body), (1, 2))
        )
    assert [a.status_code for a in answers] == [201, 201]
    assert answers[0].json() == answers[1].json()
    assert sorted(a.headers.get(REPLAYED, "") for a in answers) == ["", "true"]
    assert files.downloads == ["f.txt"]
    assert (standin.stats()["writes_applied"], standin.stats()["replays"]) == (1, 1)


def test_a_refused_request_leaves_its_key_unused(api: httpx.Client) -> None:
    bad = post(api, "/v1/documents/text", key="k1", text="")
    assert error_code(bad, 422) == "validation_error"
    fixed = post(api, "/v1/documents/text", key="k1", text="x")
    assert ok(fixed) and REPLAYED not in fixed.headers


# --- file downloads -------------------------------------------------------------------------


def test_declared_size_and_sha256_are_checked_against_the_download(
    api: httpx.Client, files: FileServer, standin: Standin
) -> None:
    data = b"file contents\n" * 100
    url = files.put("f.txt", data)
    declared: dict[str, Any] = {
        "size": len(data),
        "sha256": sha(data).upper(),
        "content_type": "text/plain",
    }
    document = ok(post(api, "/v1/documents/file", file_url=url, filename="f.txt", **declared))
    assert (document["size"], document["sha256"]) == (len(data), sha(data))

    wrongs: list[dict[str, Any]] = [{"size": len(data) + 1}, {"sha256": "0" * 64}]
    for wrong in wrongs:
        response = post(api, "/v1/documents/file", file_url=url, filename="f.txt", **wrong)
        assert error_code(response, 422) == "file_unavailable"
    assert get(api, "/v1/documents")["total"] == 1
    assert standin.stats()["writes_applied"] == 1


def test_an_unavailable_file_is_422_and_the_key_can_be_retried(
    api: httpx.Client, files: FileServer
) -> None:
    late = {"file_url": files.url("late.txt"), "filename": "late.txt"}
    missing = post(api, "/v1/documents/file", key="f1", **late)
    assert error_code(missing, 422) == "file_unavailable"
    assert "404" in missing.json()["error"]["message"]
    # A host that cannot be reached is worth a retry (our API restarting, say): 502.
    closed = post(api, "/v1/documents/file", file_url="http://127.0.0.1:9/x", filename="x")
    assert error_code(closed, 502) == "file_fetch_failed"
    assert get(api, "/v1/documents")["total"] == 0

    files.put("late.txt", b"here now")
    assert ok(post(api, "/v1/documents/file", key="f1", **late))["size"] == len(b"here now")


def test_a_retry_with_a_freshly_signed_url_replays_the_first_answer(
    api: httpx.Client, files: FileServer, standin: Standin
) -> None:
    url = files.put("signed.txt", b"same file")
    first = ok(post(api, "/v1/documents/file", key="s1", file_url=url, filename="signed.txt"))
    again = post(
        api, "/v1/documents/file", key="s1", file_url=url + "?signature=new", filename="signed.txt"
    )
    assert ok(again) == first and again.headers[REPLAYED] == "true"
    other = post(api, "/v1/documents/file", key="s1", file_url=url, filename="other.txt")
    assert error_code(other, 422) == "idempotency_key_reused"
    assert standin.stats()["writes_applied"] == 1


# --- FAQs -----------------------------------------------------------------------------------


def test_faqs_are_created_updated_listed_and_exported(api: httpx.Client, files: FileServer) -> None:
    data = b"attachment bytes"
    attachment = {"file_url": files.put("a.png", data), "filename": "a.png", "sha256": sha(data)}
    first = ok(post(api, "/v1/faqs", **faq("f1", tags=["x", "y"], attachments=[attachment])))
    assert first["attachments"] == [{**attachment, "size": len(data)}]
    assert first["tags"] == ["x", "y"] and first["updated_at"]
    ok(post(api, "/v1/faqs", **faq("f2", category="billing")))

    change = body_of(answer="New, with a comma.", tags=[])
    updated = ok(send(api, "PUT", "/v1/faqs/f1", json=change), 200)
    assert (updated["question"], updated["answer"], updated["tags"]) == ("Q?", change["answer"], [])
    assert updated["attachments"] == first["attachments"]  # not given, so kept

    listed = get(api, "/v1/faqs")
    assert listed["total"] == 2
    assert [item["faq_id"] for item in listed["items"]] == ["f1", "f2"]
    assert listed["items"][0] == updated
    assert [item["faq_id"] for item in get(api, "/v1/faqs", page=2, page_size=1)["items"]] == ["f2"]
    assert export_rows(api) == [
        ["question", "answer", "category", "tags"],
        ["Q?", "New, with a comma.", "", ""],
        ["Q?", "A.", "billing", ""],
    ]


def test_faq_conflicts_and_missing_faqs(api: httpx.Client, standin: Standin) -> None:
    ok(post(api, "/v1/faqs", **faq("f1")))
    duplicate = post(api, "/v1/faqs", key="dup", **faq("f1", answer="other"))
    assert error_code(duplicate, 409) == "faq_exists"
    # A refusal decided on the data is the key's answer: the repeat replays it.
    replay = post(api, "/v1/faqs", key="dup", **faq("f1", answer="other"))
    assert error_code(replay, 409) == "faq_exists" and replay.headers[REPLAYED] == "true"

    absent = send(api, "PUT", "/v1/faqs/nope", json=body_of(answer="x"))
    assert error_code(absent, 404) == "faq_not_found"
    assert ok(delete(api, "/v1/faqs/f1"), 200) == {"deleted": 1}
    assert error_code(delete(api, "/v1/faqs/f1"), 404) == "faq_not_found"
    assert get(api, "/v1/faqs")["total"] == 0
    assert standin.stats()["writes_applied"] == 2


def test_a_faq_with_a_bad_attachment_is_not_created(api: httpx.Client, files: FileServer) -> None:
    url = files.put("a.txt", b"abc")
    attachments = [
        {"file_url": url, "filename": "a"},
        {"file_url": url, "filename": "b", "size": 4},
    ]
    response = post(api, "/v1/faqs", **faq("f1", attachments=attachments))
    assert error_code(response, 422) == "file_unavailable"
    assert get(api, "/v1/faqs")["total"] == 0


def test_import_creates_rows_with_server_ids_and_delete_all_clears(
    api: httpx.Client, standin: Standin
) -> None:
    rows = [
        {"question": "How?", "answer": "Like this.", "category": "howto", "tags": ["a", "b"]},
        {"question": "Why?", "answer": "Because."},
    ]
    assert ok(post(api, "/v1/faqs/import", key="i1", rows=rows), 200) == {"created": 2}
    assert ok(post(api, "/v1/faqs/import", key="i1", rows=rows), 200) == {"created": 2}
    listed = get(api, "/v1/faqs")["items"]
    assert [item["question"] for item in listed] == ["How?", "Why?"]
    assert all(len(item["faq_id"]) == 32 for item in listed)
    assert export_rows(api)[1:] == [
        ["How?", "Like this.", "howto", "a;b"],
        ["Why?", "Because.", "", ""],
    ]
    assert standin.stats()["by_customer"][CUSTOMER]["faqs"] == 2

    assert ok(delete(api, "/v1/faqs"), 200) == {"deleted": 2}
    assert export_rows(api) == [["question", "answer", "category", "tags"]]


# --- faults ---------------------------------------------------------------------------------


def test_down_refuses_connections_then_recovers(api: httpx.Client, standin: Standin) -> None:
    standin.fault("down", 0.8)
    with pytest.raises(httpx.ConnectError):
        api.get("/v1/documents", params=body_of())
    wait_until(standin.data_port_open, 5, interval_s=0.05, what="the data port to reopen")
    assert get(api, "/v1/documents")["total"] == 0


@pytest.mark.parametrize(("status", "code"), [(500, "internal_error"), (503, "unavailable")])
def test_error_fault_applies_nothing_and_leaves_the_key_unused(
    api: httpx.Client, standin: Standin, status: int, code: str
) -> None:
    standin.fault("error", 5, status=status)
    response = post(api, "/v1/documents/text", key="k1", text="x")
    assert error_code(response, status) == code
    assert "Retry-After" not in response.headers
    assert standin.stats()["writes_applied"] == 0

    standin.clear_fault()
    retried = post(api, "/v1/documents/text", key="k1", text="x")
    assert ok(retried) and REPLAYED not in retried.headers


def test_rate_limit_fault_carries_retry_after(api: httpx.Client, standin: Standin) -> None:
    standin.fault("error", 5, status=429, retry_after_s=1.5)
    response = post(api, "/v1/faqs", **faq("f1"))
    assert error_code(response, 429) == "rate_limited"
    assert response.headers["Retry-After"] == "2"
    assert standin.stats()["by_customer"] == {}


def test_slow_fault_delays_then_answers(api: httpx.Client, standin: Standin) -> None:
    standin.fault("slow", 5, delay_s=0.3)
    started = time.monotonic()
    ok(post(api, "/v1/documents/text", text="x"))
    assert time.monotonic() - started >= 0.3


def test_timeout_fault_applies_the_write_then_the_retry_replays_it(
    api: httpx.Client, standin: Standin
) -> None:
    standin.fault("timeout", 5, delay_s=2)
    with pytest.raises(httpx.ReadTimeout):
        send(api, "POST", "/v1/documents/text", key="k1", json=body_of(text="x"), timeout=0.3)
    assert standin.stats()["writes_applied"] == 1

    standin.clear_fault()
    retried = post(api, "/v1/documents/text", key="k1", text="x")
    assert ok(retried) and retried.headers[REPLAYED] == "true"
    assert get(api, "/v1/documents")["total"] == 1
    stats = standin.stats()
    assert (stats["writes_applied"], stats["replays"]) == (1, 1)


def test_drop_fault_applies_the_write_then_the_retry_replays_it(
    api: httpx.Client, standin: Standin
) -> None:
    standin.fault("drop", 5)
    with pytest.raises(httpx.RemoteProtocolError):
        send(api, "POST", "/v1/documents/text", key="k1", json=body_of(text="x"))
    assert standin.stats()["writes_applied"] == 1

    standin.clear_fault()
    retried = post(api, "/v1/documents/text", key="k1", text="x")
    assert ok(retried) and retried.headers[REPLAYED] == "true"
    assert get(api, "/v1/documents")["total"] == 1


# --- contract conformance -------------------------------------------------------------------

OPERATIONS = CONTRACT.operations()
Minimal = tuple[dict[str, str] | None, dict[str, Any] | None]


def minimal_requests(file_url: str) -> dict[str, Minimal]:
    """A valid request with only the required inputs per operationId: (query, JSON body)."""
    query = body_of()
    return {
        "addTextDocument": (None, body_of(text="t")),
        "addFileDocument": (None, body_of(file_url=file_url, filename="f")),
        "addUrlDocument": (None, body_of(url="https://example.com/")),
        "listDocuments": (query, None),
        "deleteAllDocuments": (query, None),
        "deleteDocumentsBySource": (body_of(source="s"), None),
        "listOriginals": (query, None),
        "listSources": (query, None),
        "triggerReindex": (None, body_of()),
        "createFaq": (None, body_of(**faq("new"))),
        "listFaqs": (query, None),
        "deleteAllFaqs": (query, None),
        "updateFaq": (None, body_of()),
        "deleteFaq": (query, None),
        "importFaqRows": (None, body_of(rows=[{"question": "q", "answer": "a"}])),
        "exportFaqs": (query, None),
    }


def test_every_contract_operation_has_a_minimal_request() -> None:
    assert sorted(minimal_requests("http://h/f")) == sorted(op.operation_id for op in OPERATIONS)


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_each_minimal_request_sends_exactly_what_the_contract_requires(op: Operation) -> None:
    params, body = minimal_requests("http://h/f")[op.operation_id]
    assert set(params or {}) == op.required_query()
    if op.request_schema is None:
        assert body is None
    else:
        assert body is not None and set(body) == CONTRACT.required(op.request_schema)


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_the_standin_serves_every_contract_operation(
    api: httpx.Client, files: FileServer, standin: Standin, op: Operation
) -> None:
    ok(post(api, "/v1/faqs", **faq("seed")))  # for the operations on one FAQ
    params, body = minimal_requests(files.put("f", b"data"))[op.operation_id]
    path = re.sub(r"\{[^}]+\}", "seed", op.path)
    write = op.takes_header("Idempotency-Key")
    headers = {"Idempotency-Key": uuid.uuid4().hex} if write else {}

    with httpx.Client(base_url=standin.url, trust_env=False) as anonymous:
        unauthorised = anonymous.request(op.method, path, params=params, json=body, headers=headers)
    assert error_code(unauthorised, 401) == "unauthorized"
    if write:
        keyless = api.request(op.method, path, params=params, json=body)
        assert error_code(keyless, 400) == "idempotency_key_missing"

    response = api.request(op.method, path, params=params, json=body, headers=headers)
    assert response.status_code in op.success_codes(), response.text
    (content_type, media), *_ = op.responses[str(response.status_code)]["content"].items()
    assert response.headers["content-type"].split(";")[0] == content_type
    if content_type == "application/json":
        documented = CONTRACT.properties(media["schema"])
        assert documented is None or set(response.json()) <= documented
