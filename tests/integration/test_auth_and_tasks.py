"""Authentication, tenant isolation, the task endpoints, idempotency keys and redrive."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from services.core.config import DEV_JWT_SECRET, Settings, get_settings
from services.core.tasklog.models import TaskStatus, utcnow
from services.core.tasklog.repository import Claim, TaskLogRepository
from tests.support.chatbot import ChatBench, chat_bench
from tests.support.flow import failed_task
from tests.support.server import parked, running_api, token

pytestmark = pytest.mark.slow
A, B = "cust-a", "cust-b"


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    # No worker runs in this module for what this API queues.
    with running_api(parked(get_settings(), "authz"), bearer=None) as client:
        yield client


def _tokens(settings: Settings) -> dict[str, str | None]:
    other = settings.model_copy(
        update={"auth_jwt_secret": SecretStr("another-secret-that-is-not-ours-0123456789")}
    )
    # Anyone can sign with the public development secret (it is in this repository).
    public = settings.model_copy(update={"auth_jwt_secret": SecretStr(DEV_JWT_SECRET)})
    return {
        "user_a": token(settings, "user", "u-a", A),
        "admin_a": token(settings, "admin", "adm-a", A),
        "user_b": token(settings, "user", "u-b", B),
        "service": token(settings, "service", "svc"),
        "none": None,
        "expired": token(settings, "user", "u-a", A, ttl_s=-60),
        "wrong_key": token(other, "user", "u-a", A),
        "forged_service": token(public, "service", "attacker"),
    }


def _call(api: httpx.Client, who: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    bearer = _tokens(get_settings())[who]
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return api.request(method, url, headers=headers, **kwargs)


def _failed_task(
    repo: TaskLogRepository, *, user: str, customer: str, name: str = "canary_http"
) -> str:
    return failed_task(repo, customer=customer, name=name, payload={}, user=user)


PRINCIPALS = [
    "user_a",
    "admin_a",
    "user_b",
    "service",
    "none",
    "expired",
    "wrong_key",
    "forged_service",
]
UNAUTHENTICATED = {"none": 401, "expired": 401, "wrong_key": 401, "forged_service": 401}
MATRIX: dict[str, dict[str, int]] = {
    "status": {"user_a": 200, "admin_a": 200, "user_b": 404, "service": 200},
    "my_tasks": {"user_a": 200, "admin_a": 200, "user_b": 200, "service": 200},
    "retry": {"user_a": 202, "admin_a": 202, "user_b": 404, "service": 202},
    "failed": {"user_a": 403, "admin_a": 200, "user_b": 403, "service": 200},
    "redrive": {"user_a": 403, "admin_a": 200, "user_b": 403, "service": 200},
    "catalog_write": {"user_a": 202, "admin_a": 202, "user_b": 403, "service": 202},
    "document_write": {"user_a": 202, "admin_a": 202, "user_b": 403, "service": 202},
    "faq_write": {"user_a": 202, "admin_a": 202, "user_b": 403, "service": 202},
    "chatbot_read": {"user_a": 200, "admin_a": 200, "user_b": 403, "service": 200},
}


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_authorization_matrix(
    api: httpx.Client, pg_repo: TaskLogRepository, endpoint: str, who: str
) -> None:
    expected = UNAUTHENTICATED.get(who) or MATRIX[endpoint][who]
    owned = _failed_task(pg_repo, user="u-a", customer=A)
    requests: dict[str, tuple[str, str, dict[str, Any]]] = {
        "status": ("GET", f"/api/v1/tasks/{owned}/status", {}),
        "my_tasks": ("GET", "/api/v1/tasks/my-tasks", {}),
        "retry": ("POST", f"/api/v1/tasks/{owned}/retry", {}),
        "failed": ("GET", "/api/v1/tasks/failed", {}),
        "redrive": ("POST", "/api/v1/tasks/retry-failed", {"json": {"dry_run": True}}),
        "catalog_write": (
            "PUT",
            "/api/v1/products/p1",
            {"json": {"customer_id": A, "data": {"name": "x"}}},
        ),
        "document_write": (
            "POST",
            "/api/v1/documents/upload-text",
            {"json": {"customer_id": A, "text": "hi"}},
        ),
        "faq_write": (
            "POST",
            "/api/v1/mobile-faq",
            {"data": {"customer_id": A, "question": "q", "answer": "a"}},
        ),
        # Authorization is decided before ChatbotMobile is asked: none runs in this module.
        "chatbot_read": ("GET", "/api/v1/mobile-faqs", {"params": {"customer_id": A}}),
    }
    method, url, kwargs = requests[endpoint]
    answer = _call(api, who, method, url, **kwargs)
    if endpoint == "chatbot_read" and expected == 200:
        expected = 503  # allowed through, then ChatbotMobile is unreachable
    assert answer.status_code == expected, answer.text
    if expected == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_service_token_forged_with_the_public_development_secret_reads_nothing(
    api: httpx.Client, pg_repo: TaskLogRepository
) -> None:
    _failed_task(pg_repo, user="u-a", customer=A)
    forged = _call(api, "forged_service", "GET", "/api/v1/tasks/failed")
    assert forged.status_code == 401
    assert "items" not in forged.text


def test_admin_cannot_reach_another_customer(api: httpx.Client) -> None:
    answer = _call(api, "admin_a", "GET", "/api/v1/tasks/failed", params={"customer_id": B})
    assert answer.status_code == 403


def test_status_shows_progress_and_redacts_secrets(
    api: httpx.Client, pg_repo: TaskLogRepository
) -> None:
    task_id = str(uuid.uuid4())
    pg_repo.create(
        task_id=task_id,
        task_name="faq_import",
        queue="http",
        user_id="u-a",
        customer_id=A,
        payload={"customer_id": A, "token": "abcdefgh-secret"},
        deadline_at=utcnow() + timedelta(hours=1),
    )
    claim = pg_repo.claim(task_id)
    assert isinstance(claim, Claim)
    pg_repo.save_progress(task_id, attempt=claim.attempt, done=500, total=5000)
    body = _call(api, "user_a", "GET", f"/api/v1/tasks/{task_id}/status").json()
    assert body["progress"] == {"done": 500, "total": 5000}
    assert body["payload"]["token"] == "***"
    assert (body["status"], body["attempts"], body["queue"]) == ("processing", 1, "http")


def test_pagination_returns_each_task_once_in_order_and_filters_combine(
    api: httpx.Client, pg_repo: TaskLogRepository
) -> None:
    settings = get_settings()
    user = f"pager-{uuid.uuid4().hex[:6]}"
    start = utcnow() - timedelta(hours=5)
    ids = []
    for n in range(250):
        task_id = f"{user}-{n:03d}"
        pg_repo.create(
            task_id=task_id,
            task_name="faq_create" if n % 2 else "doc_upload_text",
            queue="http",
            payload={},
            user_id=user,
            customer_id=A,
            deadline_at=start + timedelta(hours=9),
            now=start + timedelta(seconds=n),
        )
        if n % 5 == 0:
            claim = pg_repo.claim(task_id)
            assert isinstance(claim, Claim)
            pg_repo.update_status(
                task_id, TaskStatus.FAILED, error="x", error_kind="permanent", attempt=claim.attempt
            )
        ids.append(task_id)
    headers = {"Authorization": f"Bearer {token(settings, 'user', user, A)}"}

    def collect(params: dict[str, Any]) -> list[str]:
        seen, cursor = [], None
        for _ in range(20):
            page = api.get(
                "/api/v1/tasks/my-tasks",
                params={**params, "limit": 40, **({"cursor": cursor} if cursor else {})},
                headers=headers,
            )
            assert page.status_code == 200, page.text
            seen += [t["task_id"] for t in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return seen
        raise AssertionError("pagination did not end")

    assert collect({}) == list(reversed(ids))
    window = {
        "created_after": (start + timedelta(seconds=100)).isoformat(),
        "created_before": (start + timedelta(seconds=200)).isoformat(),
    }
    combined = collect({"status": "failed", "task_name": "doc_upload_text", **window})
    expected = [i for n, i in enumerate(ids) if n % 5 == 0 and n % 2 == 0 and 100 <= n < 200]
    assert combined == list(reversed(expected))
    bad = api.get("/api/v1/tasks/my-tasks", params={"cursor": "nonsense"}, headers=headers)
    assert bad.status_code == 422


def test_same_idempotency_key_20_times_at_once_makes_one_task(
    api: httpx.Client, pg_repo: TaskLogRepository
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    body = {"customer_id": A, "data": {"name": "Lamp"}, "version": 1}

    headers = {
        "Authorization": f"Bearer {_tokens(get_settings())['service']}",
        "Idempotency-Key": key,
    }

    def send(_: int) -> httpx.Response:
        return api.put("/api/v1/products/idem-1", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(send, range(20)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["task_id"] for a in answers}) == 1
    assert pg_repo.find_by_idempotency_key(A, key) is not None
    different = api.put(
        "/api/v1/products/idem-1",
        json={**body, "data": {"name": "Chair"}},
        headers=headers,
    )
    assert different.status_code == 422 and "different request" in different.text
    # The key is per customer: the same key for customer B is a new task.
    other = api.put(
        "/api/v1/products/idem-1",
        json={**body, "customer_id": B},
        headers=headers,
    )
    assert other.status_code == 202 and other.json()["task_id"] != answers[0].json()["task_id"]


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatBench]:
    with chat_bench(
        tmp_path_factory.mktemp("auth-chat"), settings_update={"http_retry_budget_s": 3}
    ) as bench:
        yield bench


def test_failed_task_retried_by_api_succeeds_and_history_links_both(chat: ChatBench) -> None:
    chat.standin.fault("down", 60)
    # A customer of its own: earlier tests leave documents of A accepted with no worker, and
    # a document write waits for the earlier ones of its customer (per-entity ordering).
    customer = f"retry-{uuid.uuid4().hex[:6]}"
    try:
        answer = chat.api.post(
            "/api/v1/documents/upload-text", json={"customer_id": customer, "text": "hello"}
        )
        failed = chat.finished(answer.json()["task_id"], timeout_s=30)
        assert (failed.status, failed.failure_reason) == ("failed", "deadline_exhausted")
    finally:
        chat.standin.clear_fault()
    retried = chat.api.post(f"/api/v1/tasks/{failed.task_id}/retry")
    assert retried.status_code == 202 and retried.json()["retry_of"] == failed.task_id
    new = chat.succeeded(retried)
    old_status = chat.api.get(f"/api/v1/tasks/{failed.task_id}/status").json()
    new_status = chat.api.get(f"/api/v1/tasks/{new.task_id}/status").json()
    assert old_status["retried_as"] == new.task_id and old_status["status"] == "failed"
    assert new_status["retry_of"] == failed.task_id and new_status["status"] == "success"
    again = chat.api.post(f"/api/v1/tasks/{failed.task_id}/retry")
    assert again.status_code == 409
    not_failed = chat.api.post(f"/api/v1/tasks/{new.task_id}/retry")
    assert not_failed.status_code == 409


def test_bulk_redrive_of_100_failed_tasks_with_a_dry_run_first(chat: ChatBench) -> None:
    customer = f"redrive-{uuid.uuid4().hex[:6]}"
    ids = [_failed_task(chat.repo, user="u-r", customer=customer) for _ in range(100)]
    dry = chat.api.post(
        "/api/v1/tasks/retry-failed", json={"customer_id": customer, "dry_run": True}
    )
    assert dry.json() == {"dry_run": True, "matched": 100, "retried": []}
    too_many = chat.api.post(
        "/api/v1/tasks/retry-failed",
        json={"customer_id": customer, "dry_run": False, "max": 100_000},
    )
    assert too_many.status_code == 422
    done = chat.api.post(
        "/api/v1/tasks/retry-failed", json={"customer_id": customer, "dry_run": False, "max": 100}
    ).json()
    assert done["matched"] == 100 and sorted(r["task_id"] for r in done["retried"]) == sorted(ids)
    for item in done["retried"]:
        row = chat.finished(item["retried_as"])
        assert row.status == "success" and row.retry_of == item["task_id"]
    after = chat.api.post(
        "/api/v1/tasks/retry-failed", json={"customer_id": customer, "dry_run": True}
    )
    assert after.json()["matched"] == 0
