"""Wiring of the shared-state exporter from the settings (served by the scheduler)."""

from __future__ import annotations

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.core import redisconn
from services.core.config import Settings
from services.core.db import session_factory
from services.core.guards.gate import breakers
from services.core.observability.shared_state import SharedStateCollector


def scrape_redis(settings: Settings) -> Redis:
    """A client of the broker's Redis for scrapes: short timeouts and no retries.

    redis-py retries a failed command with backoff by default (seconds); a scrape that waits
    that long times out whole, and the task-log figures would vanish with the broker's.
    """
    return redisconn.connect(
        settings.redis_url,
        settings.redis_sentinel_master,
        timeout_s=settings.broker_connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def shared_state_collector(settings: Settings) -> SharedStateCollector:
    """The collector of task-log, broker and breaker figures for `settings`."""
    redis = scrape_redis(settings)
    return SharedStateCollector(
        sessions=session_factory(settings.database_url),
        redis=redis,
        settings=settings,
        breakers=breakers(redis, settings) if settings.breaker_enabled else {},
    )
