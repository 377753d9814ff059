"""Verifying (and, for development, issuing) the bearer JWTs of callers."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import jwt

from services.core.auth.principal import Principal, Role
from services.core.config import Settings


class AuthError(Exception):
    """A token that is missing, expired, badly signed or lacks what we need."""


class TokenVerifier:
    """Checks tokens with the shared secret (HS256) or the JWKS keys (RS256)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._jwks = jwt.PyJWKClient(settings.auth_jwks_url) if settings.auth_jwks_url else None

    def _key_and_algorithms(self, token: str) -> tuple[Any, list[str]]:
        if self._jwks is not None:
            try:
                return self._jwks.get_signing_key_from_jwt(token).key, ["RS256"]
            except jwt.PyJWKClientError as exc:
                raise AuthError(f"no signing key for this token: {exc}") from exc
        secret = self._settings.auth_jwt_secret
        assert secret is not None  # the settings refuse neither secret nor JWKS
        return secret.get_secret_value(), ["HS256"]

    def verify(self, token: str) -> Principal:
        """The principal of a valid token, else AuthError saying why."""
        key, algorithms = self._key_and_algorithms(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._settings.auth_audience,
                issuer=self._settings.auth_issuer,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": bool(self._settings.auth_audience),
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        return principal_from(claims, self._settings)


def principal_from(claims: dict[str, Any], settings: Settings) -> Principal:
    """The principal named by verified claims."""
    raw_roles = claims.get(settings.auth_roles_claim, [])
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    roles = frozenset(Role(r) for r in raw_roles if r in {x.value for x in Role})
    if not roles:
        raise AuthError(f"token has no known role in claim {settings.auth_roles_claim!r}")
    customer = claims.get(settings.auth_customer_claim)
    if customer is None and Role.SERVICE not in roles:
        raise AuthError(f"token lacks the {settings.auth_customer_claim!r} claim")
    return Principal(str(claims["sub"]), str(customer) if customer else None, roles)


def issue_token(
    settings: Settings,
    *,
    user_id: str,
    customer_id: str | None,
    roles: Iterable[str],
    ttl_s: int = 12 * 3600,
    now: float | None = None,
) -> str:
    """An HS256 token signed with AUTH_JWT_SECRET (development and tests)."""
    secret = settings.auth_jwt_secret
    if secret is None:
        raise AuthError("AUTH_JWT_SECRET is not set; tokens come from your identity provider")
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        settings.auth_roles_claim: list(roles),
        "iat": issued,
        "exp": issued + ttl_s,
    }
    if customer_id is not None:
        claims[settings.auth_customer_claim] = customer_id
    if settings.auth_issuer:
        claims["iss"] = settings.auth_issuer
    if settings.auth_audience:
        claims["aud"] = settings.auth_audience
    return jwt.encode(claims, secret.get_secret_value(), algorithm="HS256")
