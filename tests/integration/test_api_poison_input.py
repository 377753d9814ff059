"""Input the task log, a page or a downstream cannot hold is a 422 naming the field, at the edge.

Nothing of such a request is stored or queued, the answer never echoes more than a short
excerpt of the input, and what was stored before (by an older release, or by code that
enqueues without the API) still renders in every answer that shows it.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from services.api.validation import is_data_error
from services.core.config import Settings, get_settings
from services.core.db import get_engine
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import failed_task
from tests.support.procs import free_port
from tests.support.server import parked, running_api, token

pytestmark = pytest.mark.slow
CUSTOMER = "poison-c"


def nested(depth: int, leaf: Any = 1) -> Any:
    """A value `depth` objects deep."""
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    settings = parked(get_settings(), "poison").model_copy(
        update={"storage_local_dir": str(tmp_path_factory.mktemp("poison-uploads"))}
    )
    with running_api(settings) as client:
        yield client


def _rows() -> int:
    with get_engine(get_settings().database_url).connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM task_log")).scalar_one())


def _refused(answer: httpx.Response, *loc: str | int) -> None:
    """A 422 whose errors name the field at `loc` (or inside it)."""
    assert answer.status_code == 422, answer.text[:500]
    locations = [tuple(e["loc"][: len(loc)]) for e in answer.json()["detail"]]
    assert loc in locations, locations


def _put(api: httpx.Client, raw: str) -> httpx.Response:
    return api.put(
        "/api/v1/products/p-1", content=raw, headers={"content-type": "application/json"}
    )


def test_data_nested_deeper_than_data_max_depth_is_422_naming_the_field(
    api: httpx.Client, settings: Settings
) -> None:
    limit = settings.data_max_depth
    ok = api.put("/api/v1/products/p-1", json={"customer_id": CUSTOMER, "data": nested(limit)})
    assert ok.status_code == 202, ok.text
    before = _rows()
    for depth in (limit + 1, 600):
        body = {"customer_id": CUSTOMER, "data": nested(depth)}
        answer = api.put("/api/v1/products/p-1", json=body)
        _refused(answer, "body", "data")
        assert f"DATA_MAX_DEPTH ({limit})" in answer.text
        bulk = {"customer_id": CUSTOMER, "items": [{"id": "i", "data": nested(depth)}]}
        _refused(api.post("/api/v1/products/bulk-upsert", json=bulk), "body", "items", 0, "data")
    assert _rows() == before


def test_data_larger_than_data_max_bytes_is_422(api: httpx.Client, settings: Settings) -> None:
    before = _rows()
    big = {"customer_id": CUSTOMER, "data": {"blob": "x" * (settings.data_max_bytes + 1)}}
    answer = api.put("/api/v1/products/p-1", json=big)
    _refused(answer, "body", "data")
    assert len(answer.content) < 2000  # the blob is not echoed
    assert _rows() == before


# Raw JSON text, as a client sends it: Python's parser takes NaN, Infinity and 1e400 (an
# infinity), and \u escapes of lone surrogates and NUL.
UNSTORABLE = {
    # An answer shows a lone surrogate as U+FFFD (it cannot be written as UTF-8).
    "lone surrogate key": ('{"\\udfff": "x"}', ("\ufffd",)),
    "lone surrogate value": ('{"name": "a\\ud800b"}', ("name",)),
    "NaN": ('{"price": NaN}', ("price",)),
    "Infinity": ('{"price": Infinity}', ("price",)),
    "-Infinity": ('{"deep": {"price": -Infinity}}', ("deep", "price")),
    "1e400": ('{"price": 1e400}', ("price",)),
    "NUL in a value": ('{"name": "a\\u0000b"}', ("name",)),
    "NUL in a key": ('{"na\\u0000me": "x"}', ("na\x00me",)),
    "NUL in a list": ('{"tags": ["ok", "a\\u0000"]}', ("tags", 1)),
}


@pytest.mark.parametrize("case", sorted(UNSTORABLE))
def test_values_the_log_or_a_downstream_cannot_hold_are_422_naming_the_field(
    api: httpx.Client, case: str
) -> None:
    data, where = UNSTORABLE[case]
    before = _rows()
    answer = _put(api, f'{{"customer_id": "{CUSTOMER}", "data": {data}}}')
    _refused(answer, "body", "data", *where)
    bulk = f'{{"customer_id": "{CUSTOMER}", "items": [{{"id": "i-1", "data": {data}}}]}}'
    refused = api.post(
        "/api/v1/services/bulk-upsert", content=bulk, headers={"content-type": "application/json"}
    )
    _refused(refused, "body", "items", 0, "data", *where)
    assert _rows() == before


def test_a_body_nested_beyond_what_the_parser_reads_is_422(api: httpx.Client) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    answer = _put(api, f'{{"customer_id": "{CUSTOMER}", "data": {{"a": {deep}}}}}')
    _refused(answer, "body")
    assert len(answer.content) < 2000


@pytest.mark.parametrize(
    ("method", "path", "loc"),
    [
        ("GET", "/api/v1/tasks/a%00b/status", ("path", "task_id")),
        ("POST", "/api/v1/tasks/a%00b/retry", ("path", "task_id")),
        ("GET", "/api/v1/tasks/my-tasks?task_name=a%00b", ("query", "task_name")),
        ("GET", "/api/v1/tasks/failed?task_name=a%00b", ("query", "task_name")),
        ("GET", "/api/v1/tasks/failed?customer_id=a%00b", ("query", "customer_id")),
        ("DELETE", "/api/v1/documents/delete-by-source?customer_id=c1&source=a%00", ("query",)),
    ],
)
def test_nul_in_an_id_or_a_filter_is_422_not_503(
    api: httpx.Client, method: str, path: str, loc: tuple[str, ...]
) -> None:
    _refused(api.request(method, path), *loc)


@pytest.mark.parametrize(
    "created_after",
    [
        "2020-01-01T00:00:00",  # no time zone: which instant is meant?
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/tasks/my-tasks", "/api/v1/tasks/failed"])
def test_a_date_without_zone_or_out_of_range_is_422(
    api: httpx.Client, path: str, created_after: str
) -> None:
    _refused(api.get(path, params={"created_after": created_after}), "query", "created_after")
    redrive = {"created_before": created_after}
    _refused(api.post("/api/v1/tasks/retry-failed", json=redrive), "body", "created_before")


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    "raw",
    [
        "2020-01-01T00:00:00+00:00|12345678901234567890",  # a row id past BIGINT
        "2020-01-01T00:00:00+00:00|-1",
        "2020-01-01T00:00:00|1",  # no time zone
        "0001-01-01T00:00:00+05:00|1",  # before year 1 in UTC
    ],
)
def test_a_cursor_this_api_did_not_give_out_is_422(api: httpx.Client, raw: str) -> None:
    _refused(api.get("/api/v1/tasks/my-tasks", params={"cursor": _cursor(raw)}), "query", "cursor")


def test_free_text_with_nul_is_422(api: httpx.Client) -> None:
    before = _rows()
    text_doc = {"customer_id": CUSTOMER, "text": "a\x00b"}
    _refused(api.post("/api/v1/documents/upload-text", json=text_doc), "body", "text")
    faq = {"customer_id": CUSTOMER, "question": "q\x00", "answer": "a"}
    _refused(api.post("/api/v1/mobile-faq", data=faq), "body", "question")
    assert _rows() == before


def test_a_refusal_echoes_at_most_an_excerpt_and_never_fails_to_render(
    api: httpx.Client,
) -> None:
    # pydantic refuses a lone surrogate in a string field; echoing it made the 422 a 500.
    answer = api.post(
        "/api/v1/documents/upload-text",
        content=f'{{"customer_id": "{CUSTOMER}", "text": "t", "title": "\\udfff"}}',
        headers={"content-type": "application/json"},
    )
    _refused(answer, "body", "title")
    long_title = {"customer_id": CUSTOMER, "text": "t", "title": "y" * 100_000}
    answer = api.post("/api/v1/documents/upload-text", json=long_title)
    _refused(answer, "body", "title")
    assert len(answer.content) < 2000


# Values stored before the edge refused them (an older release, or code that enqueued
# without the API): every answer that shows a row must still render it.
STORED = {
    "depth 600": nested(600),
    "lone surrogates": {"\udfff": "x", "v": ["a\ud800", {"k": "\udc00"}]},
    "NUL": {"a\x00": "b\x00c"},
    "large": {"blob": "z" * 3_000_000},
}


def _stored_failed_task(repo: TaskLogRepository, value: Any, user: str) -> str:
    payload = {"customer_id": CUSTOMER, "item_id": "p-1", "data": value}
    return failed_task(
        repo, customer=CUSTOMER, name="es_upsert_product", payload=payload, user=user
    )


@pytest.mark.parametrize("case", sorted(STORED))
def test_every_stored_value_renders_in_status_pages_and_the_failed_list(
    api: httpx.Client, pg_repo: TaskLogRepository, settings: Settings, case: str
) -> None:
    user = f"reader-{uuid.uuid4().hex[:8]}"
    task_id = _stored_failed_task(pg_repo, STORED[case], user)
    owner = {"Authorization": f"Bearer {token(settings, 'admin', user, CUSTOMER)}"}
    status = api.get(f"/api/v1/tasks/{task_id}/status", headers=owner)
    assert status.status_code == 200, status.text[:300]
    assert json.loads(status.content)["task_id"] == task_id
    mine = api.get("/api/v1/tasks/my-tasks", headers=owner)
    assert mine.status_code == 200, mine.text[:300]
    assert [t["task_id"] for t in mine.json()["items"]] == [task_id]
    failed = api.get("/api/v1/tasks/failed", params={"customer_id": CUSTOMER, "limit": 200})
    assert failed.status_code == 200, failed.text[:300]
    assert task_id in [t["task_id"] for t in failed.json()["items"]]


# Any JSON value PostgreSQL's json column takes: every code point (lone surrogates and NUL
# included), numbers of any size, deep nesting. NaN and infinities cannot be stored at all.
STORABLE_TEXT = st.text(st.characters(codec=None, categories=None), max_size=12)
STORABLE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | STORABLE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STORABLE_TEXT, inner, max_size=3),
    max_leaves=8,
)


def test_any_value_that_was_stored_renders_in_the_status_answer(
    api: httpx.Client, pg_repo: TaskLogRepository, settings: Settings
) -> None:
    owner = {"Authorization": f"Bearer {token(settings, 'admin', 'any-reader', CUSTOMER)}"}
    failures: list[str] = []

    @given(value=STORABLE, depth=st.sampled_from([0, 1, 250, 700]))
    @hypothesis_settings(deadline=None, max_examples=40, derandomize=True, database=None)
    def stored_then_read(value: Any, depth: int) -> None:
        task_id = _stored_failed_task(pg_repo, nested(depth, value), "any-reader")
        answer = api.get(f"/api/v1/tasks/{task_id}/status", headers=owner)
        if answer.status_code != 200:
            failures.append(f"{value!r} at depth {depth} -> {answer.status_code}")
        else:
            json.loads(answer.content)  # well-formed, whatever it holds

    stored_then_read()
    assert failures == []


def test_the_database_refusing_a_value_is_the_callers_422_and_an_outage_stays_503(
    pg_repo: TaskLogRepository,
) -> None:
    # The safety net behind the edge's checks: PostgreSQL's own refusal of a value (NUL in
    # text) is a data error, a 422; a database that cannot be reached is not.
    with pytest.raises(DBAPIError) as refused, pg_repo.sessions() as session:
        session.execute(text("SELECT CAST(:v AS text)"), {"v": "a\x00b"})
    assert is_data_error(refused.value)
    unreachable = create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x")
    with pytest.raises(OperationalError) as down, unreachable.connect():
        pass
    assert not is_data_error(down.value)
