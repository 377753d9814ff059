"""Test run isolation: one PostgreSQL database and one Redis key prefix per run.

The environment is set here, before any `services` module reads its settings, so every
process the tests start (workers included) inherits the run's database and prefix.

The run is a development environment (its services are on loopback, which every other
environment refuses) with secrets of its own: the public development secrets are not the
run's, so a token forged with them is refused here as in a deployment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tools import localservices

RUN_ID = f"{os.getpid()}{uuid.uuid4().hex[:6]}"
PG_DB = f"durable_test_{RUN_ID}"
PG_URL = localservices.database_url(PG_DB)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

os.environ.update(
    ENVIRONMENT="development",
    SECRETS_KEY=Fernet.generate_key().decode(),
    AUTH_JWT_SECRET=f"test-run-{RUN_ID}-{uuid.uuid4().hex}",
    DATABASE_URL=PG_URL,
    REDIS_URL=REDIS_URL,
    REDIS_KEY_PREFIX=f"test{RUN_ID}:",
    LOG_JSON="true",
    LOG_LEVEL="INFO",
    # Fast retries so retry paths finish in seconds.
    RETRY_BACKOFF_BASE_S="0.05",
    RETRY_BACKOFF_MAX_S="0.5",
    # Breakers are shared by every test of the run (one Redis prefix): short open periods, so
    # a module that took a stand-in down does not hold up the next one.
    BREAKER_OPEN_S="0.5",
    BREAKER_OPEN_MAX_S="2",
    # The scheduler releases tasks held in the log twice a second.
    RELEASE_INTERVAL_S="0.5",
    # Workers serve no metrics endpoint unless a test gives them a free port: their default
    # ports would clash between the workers of one test and between parallel runs.
    ES_WORKER_METRICS_PORT="0",
    HTTP_WORKER_METRICS_PORT="0",
    SCHEDULER_METRICS_PORT="0",
)

from redis import Redis  # noqa: E402

from services.core.config import Settings, get_settings  # noqa: E402
from services.core.db import session_factory  # noqa: E402
from services.core.tasklog import migrate  # noqa: E402
from services.core.tasklog.repository import TaskLogRepository  # noqa: E402


def create_pg_database(name: str) -> str:
    """Create an empty PostgreSQL database; its URL."""
    return localservices.create_database(name, migrated=False)


def drop_pg_database(name: str) -> None:
    """Drop a database made by `create_pg_database`."""
    localservices.drop_database(name)


@pytest.fixture(scope="session", autouse=True)
def pg_database() -> Iterator[str]:
    """The run's PostgreSQL database, migrated to head."""
    create_pg_database(PG_DB)
    migrate.upgrade(PG_URL)
    yield PG_URL
    from services.core.db import dispose_engines

    dispose_engines(PG_URL)
    drop_pg_database(PG_DB)


@pytest.fixture(scope="session", autouse=True)
def redis_namespace() -> Iterator[str]:
    """The run's Redis key prefix; its keys are removed at the end."""
    prefix = get_settings().redis_key_prefix
    yield prefix
    client = Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis(settings: Settings) -> Iterator[Redis]:
    """A client of the run's Redis."""
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def settings() -> Settings:
    """Settings of this run."""
    return get_settings()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite task log in a temporary file."""
    url = f"sqlite:///{tmp_path / 'tasklog.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def repo(request: pytest.FixtureRequest, pg_database: str, tmp_path: Path) -> TaskLogRepository:
    """A task-log repository on each supported database."""
    if request.param == "postgresql":
        return TaskLogRepository(session_factory(pg_database))
    url = f"sqlite:///{tmp_path / 'tasklog.db'}"
    migrate.upgrade(url)
    return TaskLogRepository(session_factory(url))


@pytest.fixture
def pg_repo(pg_database: str) -> TaskLogRepository:
    """The task-log repository of the run's PostgreSQL database."""
    return TaskLogRepository(session_factory(pg_database))
