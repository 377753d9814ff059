"""Uploads kept in S3-compatible storage (a moto server started here) reach ChatbotMobile."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from pydantic import SecretStr

from tests.support.chatbot import ChatBench, chat_bench
from tests.support.procs import free_port, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, 30, what="the moto S3 server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[ChatBench]:
    bucket = f"uploads-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket=bucket)
    env = {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_ACCESS_KEY_ID": "test",
        "S3_SECRET_ACCESS_KEY": "test",
    }
    # model_copy does not validate: give the secret fields their real type.
    update = {
        "storage_backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": s3_endpoint,
        "s3_access_key_id": SecretStr("test"),
        "s3_secret_access_key": SecretStr("test"),
    }
    with chat_bench(
        tmp_path_factory.mktemp("s3"), worker_env=env, settings_update=update
    ) as started:
        yield started


def test_upload_file_through_s3_runs_end_to_end(bench: ChatBench) -> None:
    customer = f"cust-{uuid.uuid4().hex[:10]}"
    content = b"%PDF-1.4 " + os.urandom(50_000)
    answer = bench.api.post(
        "/api/v1/documents/upload-file",
        data={"customer_id": customer},
        files={"file": ("guide.pdf", content, "application/pdf")},
    )
    row = bench.succeeded(answer)
    assert row.payload["file"]["ref"].startswith("s3:")
    originals = bench.upstream("/v1/documents/originals", customer_id=customer)
    [original] = originals["items"]
    assert original["size"] == len(content)
    assert bench.stored_files() == []  # nothing went to the local directory
    assert isinstance(bench.storage_dir, Path)
