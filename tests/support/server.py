"""The API served by a real uvicorn server in a thread of the test process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from services.api.main import create_app
from services.core.config import Settings
from tests.support.procs import free_port, wait_until


@contextmanager
def running_api(settings: Settings, port: int | None = None) -> Iterator[httpx.Client]:
    """Serve the API for `settings` on `port` (default: a free one); a client bound to it."""
    port = port or free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 15, interval_s=0.05, what="the API to start")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(15)
