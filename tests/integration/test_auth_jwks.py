"""Bearer tokens verified with an identity provider's JWKS (RS256).

The provider is real enough: an RSA key whose public half is served over HTTP, the way the
API fetches it. Tokens count only with our issuer and audience; a malformed token is a 401,
and a provider that cannot be reached is a 503 that names no host.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from services.core.config import get_settings
from tests.support.jwks import IdentityProvider
from tests.support.procs import free_port
from tests.support.server import parked, running_api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def api(idp: IdentityProvider) -> Iterator[httpx.Client]:
    with running_api(idp.settings(parked(get_settings(), "jwks")), bearer=None) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _segment(value: object) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_token_of_our_issuer_and_audience_is_accepted(
    api: httpx.Client, idp: IdentityProvider
) -> None:
    answer = api.get("/api/v1/tasks/my-tasks", headers=_bearer(idp.token(["user"], "c1")))
    assert answer.status_code == 200, answer.text
    service = api.get("/api/v1/tasks/failed", headers=_bearer(idp.token(["service"])))
    assert service.status_code == 200, service.text


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://another-idp.test/"},
        {"iss": None},
        {"aud": "another-application"},
        {"aud": None},
    ],
    ids=["other-issuer", "no-issuer", "other-audience", "no-audience"],
)
def test_a_service_token_meant_for_someone_else_is_401(
    api: httpx.Client, idp: IdentityProvider, claims: dict[str, Any]
) -> None:
    # Signed by the same provider: only the issuer and audience tell it is not for us.
    answer = api.get("/api/v1/tasks/failed", headers=_bearer(idp.token(["service"], **claims)))
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


MALFORMED = [
    "x",
    "a.b.c",
    "e30.e30.",
    "...",
    f"{_segment({'alg': 'RS256', 'kid': {'k': 1}})}.{_segment({})}.c2ln",
    f"{_segment({'alg': 'none'})}.{_segment({'sub': 'x', 'roles': ['service']})}.",
    f"{_segment({'alg': 'HS256', 'kid': 'nope'})}.{_segment({'roles': ['service']})}.c2ln",
    f"{_segment(b'not json')}.{_segment({})}.c2ln",
    "é.é.é",
]


@pytest.mark.parametrize("token", MALFORMED)
def test_a_malformed_token_is_401_without_internal_error_text(
    api: httpx.Client, token: str
) -> None:
    answer = api.get(
        "/api/v1/tasks/my-tasks", headers={b"Authorization": f"Bearer {token}".encode()}
    )
    assert answer.status_code == 401, answer.text
    detail = answer.json()["detail"]
    for internal in ("Traceback", "Error", "http://", "127.0.0.1"):
        assert internal not in detail


def test_an_unreachable_identity_provider_is_503_naming_no_host(idp: IdentityProvider) -> None:
    port = free_port()
    settings = idp.settings(parked(get_settings(), "jwks-down")).model_copy(
        update={"auth_jwks_url": f"http://127.0.0.1:{port}/jwks.json"}
    )
    with running_api(settings, bearer=None) as api:
        answer = api.get("/api/v1/tasks/my-tasks", headers=_bearer(idp.token(["user"], "c1")))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert str(port) not in answer.text and "127.0.0.1" not in answer.text
