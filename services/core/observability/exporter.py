"""Wiring of the shared-state exporter from the settings (served by the scheduler)."""

from __future__ import annotations

from services.core.config import Settings
from services.core.db import session_factory
from services.core.guards.gate import breakers
from services.core.health import redis_client
from services.core.observability.shared_state import SharedStateCollector


def shared_state_collector(settings: Settings) -> SharedStateCollector:
    """The collector of task-log, broker and breaker figures for `settings`."""
    redis = redis_client(settings)
    return SharedStateCollector(
        sessions=session_factory(settings.database_url),
        redis=redis,
        settings=settings,
        breakers=breakers(redis, settings) if settings.breaker_enabled else {},
    )
