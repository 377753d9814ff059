"""The API fuzzed: whatever the input, never a server error.

Three sources of input, all against the running API with a live ChatbotMobile stand-in (so
a read has no excuse for a 5xx either):
- the API's own OpenAPI document, every operation, through schemathesis;
- catalog data whose keys look like secrets (`tokens`, `password_hint`), which the schema
  allows and which must be a 202 or a 422 naming the field;
- bearer tokens of every malformed shape, in both auth modes (a shared secret, and JWKS),
  which must be a 401.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.core.result import Err

from services.core.config import Settings, get_settings
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
    # A health probe's 503 is its answer, not an error (no worker reads the fuzz queues).
    return status == 503 and path.startswith("/health/")


def test_no_generated_input_gives_a_server_error(live_api: httpx.Client) -> None:
    # Driven through hypothesis directly: schemathesis' pytest plugin does not support this
    # pytest version. Each operation gets its own bounded, derandomized run.
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {token(get_settings())}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"operation not usable: {result.err()}")
            continue
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(FUZZ, max_examples=40)
        def fuzz(case: Any) -> None:
            response = case.call(base_url=str(live_api.base_url), headers=headers)
            failure = _server_error(response, f"{case.method} {case.formatted_path}")
            if failure and not _probe_verdict(response.status_code, case.path):
                failures.append(failure)

        fuzz()
    assert operations >= 25
    assert failures == []


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
