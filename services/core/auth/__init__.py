"""Who is calling: bearer JWTs, their principal, and what it may act on."""

from services.core.auth.principal import Principal, Role
from services.core.auth.tokens import AuthError, AuthUnavailable, TokenVerifier, issue_token

__all__ = ["AuthError", "AuthUnavailable", "Principal", "Role", "TokenVerifier", "issue_token"]
