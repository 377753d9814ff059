"""A Redis lock that only its owner releases.

Upkeep passes (reconciler, releaser) must not overlap when two schedulers run for a moment
(one starting while the other stops). A lock whose TTL ran out may already belong to the next
pass; releasing it with a plain DEL would let a third pass in, so release compares the token.
"""

from __future__ import annotations

import uuid

from redis import Redis

# KEYS: the lock. ARGV: the owner's token. Deletes the lock only if the token still holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLock:
    """A named lock with a TTL, released only by the pass that holds it."""

    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key
        self._release = redis.register_script(_RELEASE)

    def acquire(self, ttl_s: float) -> str | None:
        """A token if the lock was free (it then lasts `ttl_s` at most), else None."""
        token = uuid.uuid4().hex
        if self._redis.set(self._key, token, nx=True, px=max(int(ttl_s * 1000), 1)):
            return token
        return None

    def release(self, token: str) -> bool:
        """Give the lock up if `token` still holds it; False if it had run out."""
        return bool(self._release(keys=[self._key], args=[token]))
