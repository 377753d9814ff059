"""An identity provider for tests: an RSA key, its JWKS served over HTTP, and its tokens."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.core.config import Settings
from tests.support.fileserver import FileServer

ISSUER = "https://idp.test/"
AUDIENCE = "durable-writes-api"


class IdentityProvider:
    """Signs RS256 tokens and serves the public key at `jwks_url`."""

    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        self._server = FileServer().start()
        self.jwks_url = self._server.put(
            "jwks.json", json.dumps({"keys": [{**public, "kid": self.kid, "use": "sig"}]}).encode()
        )

    def settings(self, base: Settings) -> Settings:
        """`base` verifying tokens of this provider (and no shared secret)."""
        return base.model_copy(
            update={
                "auth_jwks_url": self.jwks_url,
                "auth_jwt_secret": None,
                "auth_issuer": ISSUER,
                "auth_audience": AUDIENCE,
            }
        )

    def token(self, roles: list[str], customer_id: str | None = None, **claims: Any) -> str:
        """A signed token for these roles; `claims` override or add claims (None drops one)."""
        now = int(time.time())
        body: dict[str, Any] = {
            "sub": "idp-user",
            "roles": roles,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
        }
        if customer_id is not None:
            body["customer_id"] = customer_id
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self._key, algorithm="RS256", headers={"kid": self.kid})

    def stop(self) -> None:
        """Stop serving the key set."""
        self._server.stop()
