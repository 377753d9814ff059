"""Verifying (and, for development, issuing) the bearer JWTs of callers."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import jwt

from services.core.auth.principal import Principal, Role
from services.core.config import Settings

log = logging.getLogger("services.auth")
# How long a request may wait for the identity provider's keys (PyJWT's default is 30 s).
JWKS_TIMEOUT_S = 5
# Tokens verified lately, kept until they expire: a client sends the same token with every
# request, and checking it again costs a busy API a tenth of its time.
VERIFIED_CACHE_SIZE = 1024


class AuthError(Exception):
    """A token that is missing, expired, badly signed, malformed or lacks what we need."""


class AuthUnavailable(Exception):
    """The identity provider's keys cannot be fetched: the token cannot be checked now."""


class TokenVerifier:
    """Checks tokens with the shared secret (HS256) or the JWKS keys (RS256)."""

    def __init__(self, settings: Settings, cache_size: int = VERIFIED_CACHE_SIZE) -> None:
        self._settings = settings
        self._cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._jwks = (
            jwt.PyJWKClient(settings.auth_jwks_url, timeout=JWKS_TIMEOUT_S)
            if settings.auth_jwks_url
            else None
        )

    @property
    def may_block(self) -> bool:
        """Whether `verify` may wait on the network (fetching the JWKS keys)."""
        return self._jwks is not None

    def _key_and_algorithms(self, token: str) -> tuple[Any, list[str]]:
        if self._jwks is not None:
            try:
                return self._jwks.get_signing_key_from_jwt(token).key, ["RS256"]
            except jwt.PyJWKClientConnectionError as exc:
                # The reason (URL, host, socket error) is ours to read, not the caller's.
                log.warning("identity provider keys unreachable: %s", exc)
                raise AuthUnavailable("the identity provider cannot be reached") from exc
            except jwt.PyJWKClientError as exc:
                raise AuthError("no signing key of the identity provider matches") from exc
            except jwt.PyJWTError as exc:
                raise AuthError("malformed token") from exc
            except ValueError as exc:  # the provider's answer is not a JSON key set
                log.warning("identity provider keys unreadable: %s", type(exc).__name__)
                raise AuthUnavailable("the identity provider cannot be reached") from exc
        secret = self._settings.auth_jwt_secret
        assert secret is not None  # the settings refuse neither secret nor JWKS
        return secret.get_secret_value(), ["HS256"]

    def verify(self, token: str) -> Principal:
        """The principal of a valid token, else AuthError saying why.

        A token verified before is taken from memory until its `exp`: a JWT says who its
        bearer is until then, whoever checks it (only a valid token is remembered).
        """
        known = self._verified.get(token)
        if known is not None and time.time() < known[1]:
            return known[0]
        principal, expires = self._check(token)
        with self._lock:
            if len(self._verified) >= self._cache_size:
                self._verified.popitem(last=False)
            self._verified[token] = (principal, expires)
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
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
            # PyJWT's reason speaks of the token only (segments, signature, claims).
            raise AuthError(f"invalid token: {exc}") from exc
        except jwt.PyJWTError as exc:  # a key that does not fit the algorithm, for one
            raise AuthError("invalid token") from exc
        return principal_from(claims, self._settings), float(claims["exp"])


def principal_from(claims: dict[str, Any], settings: Settings) -> Principal:
    """The principal named by verified claims (the issuer was checked with the signature)."""
    raw_roles = claims.get(settings.auth_roles_claim, [])
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    if not isinstance(raw_roles, list) or not all(isinstance(r, str) for r in raw_roles):
        raise AuthError(f"claim {settings.auth_roles_claim!r} must be a list of role names")
    roles = frozenset(Role(r) for r in raw_roles if r in {x.value for x in Role})
    if not roles:
        raise AuthError(f"token has no known role in claim {settings.auth_roles_claim!r}")
    customer = claims.get(settings.auth_customer_claim)
    if customer is not None and not isinstance(customer, str | int):
        raise AuthError(f"claim {settings.auth_customer_claim!r} must be a string")
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
