"""A verified token is remembered until it expires, and not a moment longer."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from services.core.auth import AuthError, TokenVerifier, issue_token
from services.core.config import Settings


def test_a_remembered_token_is_refused_once_it_expires(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    issued = int(time.time())
    token = issue_token(settings, user_id="u", customer_id="c", roles=["user"], ttl_s=1, now=issued)
    assert verifier.verify(token).user_id == "u"
    assert verifier.verify(token).user_id == "u"  # from memory
    # Past its exp: the memory of it must not outlive it.
    time.sleep(max(0.0, issued + 1.05 - time.time()))
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_an_invalid_token_is_never_remembered(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    other = settings.model_copy(
        update={"auth_jwt_secret": SecretStr("another-secret-another-secret-1234")}
    )
    forged = issue_token(other, user_id="u", customer_id="c", roles=["user"])
    for _ in range(2):
        with pytest.raises(AuthError):
            verifier.verify(forged)


def test_memory_is_bounded(settings: Settings) -> None:
    verifier = TokenVerifier(settings, cache_size=3)
    tokens = [
        issue_token(settings, user_id=f"u{i}", customer_id="c", roles=["user"]) for i in range(5)
    ]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 3
    assert [p.user_id for p, _ in verifier._verified.values()] == ["u2", "u3", "u4"]
