"""What a worker logs about a task: who, where, which attempt and how it ended; never its data.

A task's payload is customer data (product texts, FAQ answers). Celery's own lines would
carry up to 1 KB of it at INFO ("received", "succeeded"), and its events would hand it to
Flower. Runs on its own redis-server and task log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.core.config import Settings
from services.core.db import session_factory
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import enqueuer, es_worker, isolated, wait_finished
from tests.support.procs import RedisServer
from tests.support.tasks import TEST_EFFECT

pytestmark = pytest.mark.slow
MARKER = "customer-data-that-must-stay-out-of-logs"


def _lines(log: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_worker_logs_carry_task_id_name_queue_attempt_and_outcome_but_no_payload(
    settings: Settings, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    own = isolated(settings, tmp_path, redis)
    worker = es_worker(own, tmp_path, LOG_LEVEL="INFO").start()
    try:
        payload = {"key": "quiet", "transient_failures": 1, "description": MARKER}
        task = enqueuer(own).enqueue(TEST_EFFECT.name, payload)
        row = wait_finished(TaskLogRepository(session_factory(own.database_url)), task.task_id)
    finally:
        worker.stop()
        redis.stop()
    assert row.status == "success"
    log = worker.log()
    assert MARKER not in log
    lines = _lines(log)
    ours = [line for line in lines if line.get("task_id") == task.task_id]
    outcomes = {(line["msg"], line.get("attempt"), line.get("outcome")) for line in ours}
    assert ("task attempt failed; retrying", 1, "retry") in outcomes
    assert ("task succeeded", 2, "success") in outcomes
    for line in ours:
        assert (line["task_name"], line["queue"]) == (TEST_EFFECT.name, "es")
    # Celery's own lines name the task; they attach no arguments.
    celery_lines = [line for line in lines if task.task_id in line["msg"]]
    assert any("received" in line["msg"] for line in celery_lines)
    assert all("data" not in line for line in celery_lines)
