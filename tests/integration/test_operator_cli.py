"""The `durable-tasks` console script, run as a real process on a task log of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis

from services.core.config import get_settings
from services.core.db import session_factory
from services.core.tasklog import migrate
from services.core.tasklog.models import TaskStatus, utcnow
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import failed_task
from tests.support.procs import ROOT


@pytest.fixture
def task_log(tmp_path: Path) -> tuple[str, TaskLogRepository]:
    url = f"sqlite:///{tmp_path / 'tasklog.db'}"
    migrate.upgrade(url)
    return url, TaskLogRepository(session_factory(url))


def _failed(
    repo: TaskLogRepository, customer: str, name: str = "doc_upload_text", **extra: str
) -> str:
    payload = {"customer_id": customer, "text": "t", **extra}
    return failed_task(repo, customer=customer, name=name, payload=payload)


def _cli(url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "REDIS_KEY_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "services.core.operations.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_lists_shows_counts_and_redrives(task_log: tuple[str, TaskLogRepository]) -> None:
    url, repo = task_log
    prefix = f"{get_settings().redis_key_prefix}cli-{uuid.uuid4().hex[:6]}:"
    # (Only rows written straight to the log can hold a secret-looking field: the enqueue
    # path refuses them. `show` must mask it all the same.)
    ids = [_failed(repo, "c1") for _ in range(3)]
    ids.append(_failed(repo, "c2", "faq_create", token="abcdefgh-not-shown"))

    listed = _cli(url, prefix, "failed", "--customer", "c1")
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == sorted(ids[:3])

    shown = _cli(url, prefix, "show", ids[3])
    body = json.loads(shown.stdout)
    assert body["task_name"] == "faq_create" and body["payload"]["token"] == "***"
    assert "sealed_secrets" not in body and body["retried_as"] is None

    counts = _cli(url, prefix, "counts")
    assert counts.stdout.split() == ["failed", "http", "4"]

    dry = _cli(url, prefix, "redrive", "--customer", "c1")
    assert dry.stdout.strip().splitlines()[-1] == "matched=3 would retry=3"
    done = _cli(url, prefix, "redrive", "--customer", "c1", "--no-dry-run", "--max", "2")
    assert done.stdout.strip().splitlines()[-1] == "matched=3 retried=2"
    client = Redis.from_url(get_settings().redis_url)
    try:
        assert client.llen(f"{prefix}http") == 2  # published to the broker for a worker
    finally:
        client.close()
    again = _cli(url, prefix, "redrive", "--customer", "c1")
    assert again.stdout.strip().splitlines()[-1] == "matched=1 would retry=1"

    missing = _cli(url, prefix, "show", "no-such-task")
    assert missing.returncode == 1 and "no task no-such-task" in missing.stderr


def test_cli_lists_and_redrives_by_failure_reason(
    task_log: tuple[str, TaskLogRepository],
) -> None:
    # After the fix of whatever poisoned them, an operator redrives those and only those.
    url, repo = task_log
    prefix = f"{get_settings().redis_key_prefix}cli-{uuid.uuid4().hex[:6]}:"
    expired = _failed(repo, "c1")  # deadline_exhausted
    poisoned = str(uuid.uuid4())
    repo.create(
        task_id=poisoned,
        task_name="doc_upload_text",
        queue="http",
        payload={"customer_id": "c1", "text": "t"},
        customer_id="c1",
        deadline_at=utcnow() + timedelta(hours=1),
    )
    assert repo.update_status(
        poisoned,
        TaskStatus.FAILED,
        error="poison message: the worker could not hand it to its pool: RecursionError",
        error_kind="permanent",
        failure_reason="poison",
    )
    listed = _cli(url, prefix, "failed", "--failure-reason", "poison")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [poisoned]
    done = _cli(url, prefix, "redrive", "--failure-reason", "poison", "--no-dry-run")
    assert done.stdout.strip().splitlines()[-1] == "matched=1 retried=1"
    assert repo.get_retry_of(poisoned) is not None and repo.get_retry_of(expired) is None
