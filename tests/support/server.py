"""The API served by a real uvicorn server in a thread of the test process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from services.api.main import create_app
from services.core.auth import issue_token
from services.core.config import Settings
from tests.support.procs import free_port, wait_until


def token(
    settings: Settings,
    role: str = "service",
    user_id: str = "svc",
    customer_id: str | None = None,
    ttl_s: int = 3600,
) -> str:
    """A bearer token signed with the settings' secret."""
    return issue_token(
        settings, user_id=user_id, customer_id=customer_id, roles=[role], ttl_s=ttl_s
    )


def parked(settings: Settings, name: str) -> Settings:
    """The settings with a Redis prefix no worker reads: what such an API queues stays put.

    For tests that enqueue without wanting the tasks run, so that no later test's worker
    picks them up.
    """
    return settings.model_copy(update={"redis_key_prefix": f"{settings.redis_key_prefix}{name}:"})


@contextmanager
def running_api(
    settings: Settings, port: int | None = None, bearer: str | None = "service"
) -> Iterator[httpx.Client]:
    """Serve the API for `settings` on `port` (default: a free one); a client bound to it.

    The client sends a service token unless `bearer` is None.
    """
    port = port or free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 15, interval_s=0.05, what="the API to start")
        headers = {"Authorization": f"Bearer {token(settings)}"} if bearer else {}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=15, headers=headers
        ) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(15)
