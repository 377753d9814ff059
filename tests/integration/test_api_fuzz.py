"""The API fuzzed: whatever the input, never a server error nor an answer its schema denies.

Three sources of input, all against the running API with a live ChatbotMobile stand-in (so
a read has no excuse for a 5xx either):
- the API's own OpenAPI document, every operation, through schemathesis in positive mode,
  with a hook that pins every customer to the token's so that writes (uploads and imports
  included) are accepted, not refused: any 5xx, undocumented status or schema violation
  fails, and every write operation must have been accepted at least once;
- catalog data whose keys look like secrets (`tokens`, `password_hint`), which the schema
  allows and which must be a 202 or a 422 naming the field;
- bearer tokens of every malformed shape, in both auth modes (a shared secret, and JWKS),
  which must be a 401.

`FUZZ_EXAMPLES` (default 25) sets the schemathesis examples per operation.
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err

from services.core.config import Settings, get_settings
from services.core.db import session_factory
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import failed_task
from tests.support.jwks import IdentityProvider
from tests.support.server import parked, running_api, token
from tests.support.standins import Standin

pytestmark = pytest.mark.slow
CHATBOT_TOKEN = "fuzz-chatbot-token"
FUZZ = settings(
    deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)


@pytest.fixture(scope="module")
def chatbot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standin]:
    standin = Standin("chatbotmobile", tmp_path_factory.mktemp("fuzz-chatbot"), "--token")
    standin.args.append(CHATBOT_TOKEN)
    standin.start()
    yield standin
    standin.stop()


def _fuzz_settings(uploads: Path, chatbot: Standin) -> Settings:
    return parked(get_settings(), "fuzz").model_copy(
        update={
            "storage_local_dir": str(uploads),
            "chatbot_url": chatbot.url,
            "chatbot_api_token": SecretStr(CHATBOT_TOKEN),
        }
    )


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory, chatbot: Standin) -> Iterator[httpx.Client]:
    with running_api(_fuzz_settings(tmp_path_factory.mktemp("fuzz-uploads"), chatbot)) as client:
        yield client


@pytest.fixture(scope="module")
def jwks_api(tmp_path_factory: pytest.TempPathFactory, chatbot: Standin) -> Iterator[httpx.Client]:
    idp = IdentityProvider()
    uploads = tmp_path_factory.mktemp("fuzz-jwks-uploads")
    try:
        with running_api(idp.settings(_fuzz_settings(uploads, chatbot)), bearer=None) as client:
            yield client
    finally:
        idp.stop()


def _server_error(response: Any, what: str) -> str | None:
    if response.status_code >= 500:
        return f"{what} -> {response.status_code}: {response.text[:300]}"
    return None


def _probe_verdict(status: int, path: str) -> bool:
    return status == 503 and path.startswith("/health/")


FUZZ_CUSTOMER = "fuzz-c"
WRITES = {"POST", "PUT", "DELETE", "PATCH"}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _failed_tasks(count: int) -> list[str]:
    """Failed tasks of the fuzzing customer, for the retry route to take."""
    repo = TaskLogRepository(session_factory(get_settings().database_url))
    return [
        failed_task(repo, customer=FUZZ_CUSTOMER, name="canary_http", payload={}, user="fuzzer")
        for _ in range(count)
    ]


def _csv_for(seed: bytes) -> bytes:
    return b"question,answer\nq" + seed.hex().encode()[:20] + b",a\n"


def _pin_to_the_token(case: Any, retryable: list[str]) -> Any:
    """The fuzzer's hook: every customer_id is the token's, so writes are accepted rather
    than all refused with 403; the retry route gets failed tasks of that customer; half the
    FAQ imports carry a well-formed CSV (random bytes are refused row by row)."""
    for container in (case.query, case.body):
        if isinstance(container, dict) and "customer_id" in container:
            container["customer_id"] = FUZZ_CUSTOMER
    path = case.operation.path
    if path.endswith("/{task_id}/retry") and retryable:
        # Each failed task once (a second retry of one is a 409, documented too).
        case.path_parameters["task_id"] = retryable.pop()
    if path.endswith("/mobile-faq/import") and isinstance(case.body, dict):
        seed = case.body.get("file")
        if isinstance(seed, str | bytes) and len(seed) % 2 == 0:
            case.body["file"] = _csv_for(seed.encode() if isinstance(seed, str) else seed)
    return case


def _fuzz(
    operation: Any, base_url: str, headers: dict[str, str], failures: list[str]
) -> Counter[int]:
    """Run `operation`'s generated cases; their statuses, and failures added to `failures`."""
    seen: Counter[int] = Counter()

    @given(case=operation.as_strategy())
    @settings(FUZZ, max_examples=EXAMPLES)
    def fuzz(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers)
        seen[response.status_code] += 1
        # A health probe's 503 is its documented verdict (no worker reads the fuzz queues),
        # not a server error; its body and status are still checked.
        checks = CHECKS[1:] if _probe_verdict(response.status_code, case.path) else CHECKS
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as exc:
            where = f"{case.method} {case.formatted_path} -> {response.status_code}"
            found = "; ".join(f"{e.title}: {str(e)[:200]}" for e in exc.exceptions)
            failures.append(f"{where}: {found}")

    fuzz()
    return seen


def test_every_operation_answers_only_what_its_schema_documents(live_api: httpx.Client) -> None:
    # Positive mode, as a client that read the OpenAPI document would call: any 5xx, any
    # status the document does not list and any answer that violates its schema fails.
    # Driven through hypothesis directly: schemathesis' pytest plugin does not support this
    # pytest version. Each operation gets its own bounded, derandomized run.
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/openapi.json")
    retryable = _failed_tasks(EXAMPLES)

    @schema.hook("map_case")
    def pin(_context: Any, case: Any) -> Any:
        return _pin_to_the_token(case, retryable)

    bearer = token(get_settings(), "admin", "fuzzer", FUZZ_CUSTOMER)
    headers = {"Authorization": f"Bearer {bearer}"}
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = {}
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"operation not usable: {result.err()}")
            continue
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        statuses[label] = _fuzz(operation, str(live_api.base_url), headers, failures)
    cases = sum(sum(c.values()) for c in statuses.values())
    print(f"schemathesis: {len(statuses)} operations, {cases} cases")
    for label, counts in sorted(statuses.items()):
        print(f"  {label}: {sum(counts.values())} cases, statuses {dict(sorted(counts.items()))}")
    unreached = [
        label
        for label, counts in statuses.items()
        if label.split()[0] in WRITES and not any(200 <= s < 300 for s in counts)
    ]
    assert len(statuses) >= 25
    assert failures == [], "\n".join(failures)
    assert unreached == [], "write operations the fuzzer never got accepted"


SECRET_LOOKING = ["tokens", "password_hint", "api_key", "secret", "Authorization", "credentials"]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
CATALOG_DATA = st.dictionaries(
    st.sampled_from(SECRET_LOOKING) | st.text(max_size=10), JSON_VALUES, max_size=4
).map(lambda data: {k: v for k, v in data.items() if k != "id"})


def test_secret_looking_catalog_keys_are_data_or_a_422_naming_them(
    live_api: httpx.Client,
) -> None:
    failures: list[str] = []

    @given(data=CATALOG_DATA, nested=st.booleans())
    @settings(FUZZ, max_examples=120)
    def fuzz(data: dict[str, Any], nested: bool) -> None:
        body = {"customer_id": "c1", "data": {"specs": data} if nested else data}
        answer = live_api.put("/api/v1/products/p-fuzz", json=body)
        if failure := _server_error(answer, f"PUT data={body['data']!r}"):
            failures.append(failure)
        elif answer.status_code == 422:
            locations = [e["loc"] for e in answer.json()["detail"]]
            if not all(loc[:2] == ["body", "data"] for loc in locations):
                failures.append(f"422 without the field for {body['data']!r}: {locations}")
        elif answer.status_code != 202:
            failures.append(f"PUT data={body['data']!r} -> {answer.status_code}")

    fuzz()
    assert failures == []


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1)
SEGMENT = st.one_of(
    st.binary(max_size=40).map(_segment),
    JSON_VALUES.map(lambda v: _segment(json.dumps(v).encode())),
    st.fixed_dictionaries(
        {"alg": st.sampled_from(["RS256", "HS256", "none", "ES256", "x"])},
        optional={"kid": JSON_VALUES, "typ": JSON_VALUES},
    ).map(lambda v: _segment(json.dumps(v).encode())),
    HEADER_TEXT,
)
TOKENS = st.one_of(
    HEADER_TEXT,
    st.lists(SEGMENT, min_size=1, max_size=4).map(".".join).filter(bool),
)


@pytest.mark.parametrize("mode", ["shared-secret", "jwks"])
def test_no_malformed_token_gives_anything_but_a_401(
    mode: str, live_api: httpx.Client, jwks_api: httpx.Client
) -> None:
    api = live_api if mode == "shared-secret" else jwks_api
    failures: list[str] = []

    @given(bearer=TOKENS)
    @settings(FUZZ, max_examples=150)
    def fuzz(bearer: str) -> None:
        answer = api.get("/api/v1/tasks/my-tasks", headers={"Authorization": f"Bearer {bearer}"})
        if answer.status_code != 401:
            failures.append(f"{bearer!r} -> {answer.status_code}: {answer.text[:200]}")

    fuzz()
    assert failures == []
