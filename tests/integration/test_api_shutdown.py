"""A request still running when the API's shutdown timeout ends: 503 with Retry-After, not 500.

uvicorn lets requests in flight finish for `timeout_graceful_shutdown` (the process table's
shutdown timeout), then cancels them; the client then got uvicorn's 500, "the server broke",
for a request that only needs to be sent again to another replica.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from services.api.main import create_app
from services.core.config import Settings
from tests.support.procs import free_port, wait_until
from tests.support.server import parked, token
from tests.support.standins import Standin

pytestmark = pytest.mark.slow
CHATBOT_TOKEN = "shutdown-chatbot-token"


def test_a_request_cut_by_the_shutdown_timeout_gets_503_with_retry_after(
    settings: Settings, tmp_path: Path
) -> None:
    chatbot = Standin("chatbotmobile", tmp_path, "--token", CHATBOT_TOKEN).start()
    try:
        # ChatbotMobile answers a read in 30 s, long after the 1 s shutdown timeout.
        chatbot.fault("slow", 60, delay_s=30)
        own = parked(settings, "shutdown").model_copy(
            update={"chatbot_url": chatbot.url, "chatbot_api_token": SecretStr(CHATBOT_TOKEN)}
        )
        port = free_port()
        config = uvicorn.Config(
            create_app(own), host="127.0.0.1", port=port, log_config=None,
            timeout_graceful_shutdown=1,
        )  # fmt: skip
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_until(lambda: server.started, 15, interval_s=0.05, what="the API to start")
        headers = {"Authorization": f"Bearer {token(own)}"}
        with ThreadPoolExecutor(1) as pool, httpx.Client(timeout=60) as client:
            read = pool.submit(
                client.get,
                f"http://127.0.0.1:{port}/api/v1/mobile-faqs",
                params={"customer_id": "c1"},
                headers=headers,
            )
            wait_until(lambda: server.server_state.tasks, 15, what="the request in flight")
            server.should_exit = True
            answer = read.result(60)
        thread.join(30)
    finally:
        chatbot.stop()
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    assert "shutting down" in answer.json()["detail"]
