"""The API's /metrics: requests by route template, and one view across uvicorn workers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from services.core.config import Settings
from tests.support.metrics import scrape, value, values
from tests.support.procs import ROOT, free_port, wait_until
from tests.support.server import running_api


def test_requests_are_counted_by_route_template_never_by_path(settings: Settings) -> None:
    task_id = str(uuid.uuid4())
    route = "/api/v1/tasks/{task_id}/status"
    with running_api(settings) as api:
        url = f"{str(api.base_url).rstrip('/')}/metrics"
        name = "durable_http_requests_total"
        counted = sum(values(scrape(url), name, route=route, status="404"))
        assert api.get(f"/api/v1/tasks/{task_id}/status").status_code == 404
        assert api.get(f"/no/such/{task_id}").status_code == 404
        assert api.request("PROPFIND", "/health/live").status_code == 405
        text = api.get("/metrics").text
        samples = scrape(url)
    assert task_id not in text
    assert value(samples, name, method="GET", route=route, status="404") == counted + 1
    assert values(samples, name, method="GET", route="<unmatched>", status="404")
    # A method no route has is "other": clients cannot mint label values.
    assert values(samples, name, method="other", route="/health/live", status="405")
    assert values(samples, "durable_http_request_duration_seconds_count", route=route)


@pytest.mark.slow
def test_several_uvicorn_workers_serve_one_merged_view(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    metrics_dir = tmp_path / "prom"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "API_PORT": str(port),
        "API_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.api.main"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def both_workers_up() -> bool:
            assert proc.poll() is None, (tmp_path / "api.log").read_text()
            # Each worker process writes its own files once its app is built; it listens
            # only once its start-up (lifespan) is done, so both are waited for.
            if len({f.name for f in metrics_dir.glob("counter_*.db")}) != 2:
                return False
            try:
                with httpx.Client(trust_env=False) as client:
                    # Not /health/live, whose count the test checks below.
                    return client.get(f"{base}/metrics").status_code == 200
            except httpx.ConnectError:
                return False

        wait_until(both_workers_up, 60, interval_s=0.2, what="two API worker processes")
        for _ in range(20):
            # A new connection each time, so that the requests spread over the workers.
            with httpx.Client(trust_env=False) as client:
                assert client.get(f"{base}/health/live").status_code == 200
        seen = set()
        for _ in range(6):
            samples = scrape(f"{base}/metrics")
            seen.add(
                value(samples, "durable_http_requests_total", route="/health/live", status="200")
            )
        # Whichever worker answered the scrape, it reported all 20 requests.
        assert seen == {20}
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
