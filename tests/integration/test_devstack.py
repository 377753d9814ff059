"""`make up`'s runner brings up all five processes and stops them cleanly."""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.core.config import get_settings
from tests.support.procs import ROOT, free_port, wait_until
from tests.support.server import token

pytestmark = pytest.mark.slow


def _get(url: str, headers: dict[str, str] | None = None) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3, headers=headers)
    except httpx.TransportError:
        return None


def test_devstack_runs_the_stack_with_standins_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    api_port, flower_port = free_port(), free_port()
    es_port = free_port()
    metrics = {name: free_port() for name in ("es", "http", "scheduler", "celery")}
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k
            not in {"ELASTICSEARCH_URL", "EMBEDDINGS_PROVIDER", "CHATBOT_URL", "PUBLIC_API_URL"}
        },
        "ES_STANDIN_PORT": str(es_port),
        "ES_STANDIN_CONTROL_PORT": str(free_port()),
        "EMBEDDINGS_STANDIN_PORT": str(free_port()),
        "EMBEDDINGS_STANDIN_CONTROL_PORT": str(free_port()),
        "ES_INDEX_PREFIX": "devstack-",
        "CHATBOT_STANDIN_PORT": str(free_port()),
        "CHATBOT_STANDIN_CONTROL_PORT": str(free_port()),
        "API_PORT": str(api_port),
        "FLOWER_PORT": str(flower_port),
        "DEVSTACK_GRACE_S": "20",
        "ES_WORKER_CONCURRENCY": "1",
        "HTTP_WORKER_CONCURRENCY": "1",
        "ES_WORKER_METRICS_PORT": str(metrics["es"]),
        "HTTP_WORKER_METRICS_PORT": str(metrics["http"]),
        "SCHEDULER_METRICS_PORT": str(metrics["scheduler"]),
        "CELERY_EXPORTER_PORT": str(metrics["celery"]),
    }
    log_path = tmp_path / "devstack.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "tools/devstack.py"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        auth = {"Authorization": f"Bearer {token(get_settings(), 'admin', 'dev-admin', 'dev')}"}

        def celery_ok() -> httpx.Response | None:
            # Node names are shown to authenticated callers only.
            answer = _get(f"http://127.0.0.1:{api_port}/health/celery", auth)
            return answer if answer is not None and answer.status_code == 200 else None

        health = wait_until(celery_ok, 60, interval_s=0.5, what="/health/celery to say ok")
        workers = health.json()["workers"]
        assert any(n.startswith("es@") for n in workers["es"]["nodes"])
        assert any(n.startswith("http@") for n in workers["http"]["nodes"])
        assert any(n.startswith("scheduler@") for n in workers["maintenance"]["nodes"])
        flower = wait_until(
            lambda: _get(f"http://127.0.0.1:{flower_port}/healthcheck"), 30, what="Flower"
        )
        assert flower.status_code == 200
        # Flower's API answers with the development credentials the stack printed, and only
        # with them.
        printed = re.search(r"Flower user: (\S+) password: (\S+)", log_path.read_text())
        assert printed is not None
        flower_api = f"http://127.0.0.1:{flower_port}/api/workers"
        answer = httpx.get(flower_api, auth=(printed[1], printed[2]), timeout=10)
        assert answer.status_code == 200 and isinstance(answer.json(), dict)
        assert httpx.get(flower_api, timeout=10).status_code == 401
        # A catalog write goes through the stack into the Elasticsearch stand-in, with a vector
        # from the embeddings stand-in.
        put = httpx.put(
            f"http://127.0.0.1:{api_port}/api/v1/products/lamp",
            json={"customer_id": "dev", "data": {"name": "Lamp"}, "with_embedding": True},
            headers=auth,
        )
        assert put.status_code == 202
        doc_url = f"http://127.0.0.1:{es_port}/devstack-products/_doc/dev:lamp?routing=dev"

        def stored() -> dict[str, object] | None:
            answer = _get(doc_url)
            return (
                answer.json()["_source"]
                if answer is not None and answer.status_code == 200
                else None
            )

        source = wait_until(stored, 30, what="the product in the ES stand-in")
        assert source["name"] == "Lamp" and len(source["embedding"]) == 64
        # A document upload goes through the stack into the ChatbotMobile stand-in, which
        # downloads the stored file from the API's signed link.
        upload = httpx.post(
            f"http://127.0.0.1:{api_port}/api/v1/documents/upload-file",
            data={"customer_id": "dev"},
            files={"file": ("a.pdf", b"%PDF-1.4 hello", "application/pdf")},
            headers=auth,
        )
        assert upload.status_code == 202, upload.text
        originals_url = (
            f"http://127.0.0.1:{api_port}/api/v1/documents-original/list?customer_id=dev"
        )

        def original() -> list[dict[str, object]] | None:
            answer = _get(originals_url, auth)
            items = (
                answer.json()["items"] if answer is not None and answer.status_code == 200 else []
            )
            return items or None

        [document] = wait_until(original, 30, what="the document in the ChatbotMobile stand-in")
        assert document["size"] == len(b"%PDF-1.4 hello")
        # Every process serves its metrics where `make up` said it would.
        output = log_path.read_text()
        for name, url in [
            ("api", f"http://127.0.0.1:{api_port}/metrics"),
            ("es-worker", f"http://127.0.0.1:{metrics['es']}/metrics"),
            ("http-worker", f"http://127.0.0.1:{metrics['http']}/metrics"),
            ("scheduler", f"http://127.0.0.1:{metrics['scheduler']}/metrics"),
            ("celery-exporter", f"http://127.0.0.1:{metrics['celery']}/metrics"),
        ]:
            assert f"metrics: {name} {url}" in output
            answer = wait_until(functools.partial(_get, url), 30, what=f"{name} metrics")
            assert answer.status_code == 200, name
        scheduler = _get(f"http://127.0.0.1:{metrics['scheduler']}/metrics")
        assert scheduler is not None and "durable_queue_outstanding_tasks" in scheduler.text
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        # Stop the whole stack even when an assertion failed: its workers read this run's
        # queues and would take later tests' tasks.
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = log_path.read_text()
    for name in (
        "es-standin",
        "emb-standin",
        "api",
        "es-worker",
        "http-worker",
        "scheduler",
        "flower",
        "celery-exporter",
    ):
        assert f"started {name}" in output
        assert f"stopping {name}" in output
    assert "killing it" not in output
    assert re.search(r"^devstack\s+\| stopped$", output, re.MULTILINE)
