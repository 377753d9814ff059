"""How our own code reaches the broker's Redis: a plain URL, or Redis Sentinel.

`REDIS_URL` is what Celery takes: `redis://[user:password@]host:port/db`, `rediss://...` for
TLS (managed Redis; `?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.crt`), or for Sentinel a list
of sentinels, `sentinel://[:password@]host:port/db;sentinel://host2:port/db`, with the master's
name in `REDIS_SENTINEL_MASTER` (kombu's `master_name` transport option). The guards, probes,
reconciler and exporter need a client on the same master: `connect` builds it either way.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from redis import Redis
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel"
SENTINEL_PORT = 26379
TLS_SCHEME = "rediss"
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def urls(redis_url: str) -> list[str]:
    """The URLs of `REDIS_URL` (several for Sentinel, separated by ';')."""
    return [part.strip() for part in redis_url.split(";") if part.strip()]


def is_sentinel(redis_url: str) -> bool:
    """Whether `REDIS_URL` names sentinels rather than a Redis server."""
    return urlsplit(urls(redis_url)[0]).scheme == SENTINEL_SCHEME


def hosts(redis_url: str) -> list[str | None]:
    """The host of each URL (for the settings' checks)."""
    return [urlsplit(url).hostname for url in urls(redis_url)]


def sentinel_nodes(redis_url: str) -> list[tuple[str, int]]:
    """(host, port) of each sentinel; ValueError on a URL that is not a sentinel one."""
    nodes = []
    for url in urls(redis_url):
        parts = urlsplit(url)
        if parts.scheme != SENTINEL_SCHEME or not parts.hostname:
            raise ValueError(f"every REDIS_URL part must be sentinel://host:port, not {url!r}")
        nodes.append((parts.hostname, parts.port or SENTINEL_PORT))
    return nodes


def tls_options(redis_url: str) -> dict[str, Any] | None:
    """kombu's `broker_use_ssl` for a rediss:// REDIS_URL, from its query (None: no TLS).

    kombu given a rediss:// URL and no options connects with CERT_NONE, trusting any server;
    redis-py reads the same query itself. ValueError names a query it cannot take."""
    parts = urlsplit(urls(redis_url)[0])
    if parts.scheme != TLS_SCHEME:
        return None
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - {"ssl_cert_reqs", *_TLS_FILES})
    if unknown:
        raise ValueError(f"REDIS_URL: unknown TLS option(s) {', '.join(unknown)}")
    reqs = query.get("ssl_cert_reqs", "required")
    if reqs not in _CERT_REQS:
        raise ValueError("REDIS_URL: ssl_cert_reqs must be required, optional or none")
    options: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[reqs]}
    options.update({name: query[name] for name in _TLS_FILES if name in query})
    return options


def _password_and_db(redis_url: str) -> tuple[str | None, int]:
    parts = urlsplit(urls(redis_url)[0])
    password = unquote(parts.password) if parts.password else None
    path = parts.path.strip("/")
    return password, int(path) if path else 0


def connect(
    redis_url: str, master: str | None, *, timeout_s: float, retry: Retry | None = None
) -> Redis:
    """A client of the broker's Redis (the current master under Sentinel)."""
    options: dict[str, Any] = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    if retry is not None:
        options["retry"] = retry
    if not is_sentinel(redis_url):
        return Redis.from_url(redis_url, **options)
    if not master:
        raise ValueError("a sentinel:// REDIS_URL needs REDIS_SENTINEL_MASTER")
    password, db = _password_and_db(redis_url)
    sentinels = Sentinel(sentinel_nodes(redis_url), **options)  # type: ignore[no-untyped-call]
    # The client asks the sentinels for the master on each new connection, so it follows a
    # failover; the password is the master's (as kombu uses it).
    client: Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        master, password=password, db=db, **options
    )
    return client
