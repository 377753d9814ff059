"""A worker's liveness follows its consumer loop, and its SIGTERM must be the bounded one.

Each test runs on a redis-server of its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.core.config import Settings
from services.core.db import session_factory
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import enqueuer, es_worker, isolated, wait_finished
from tests.support.procs import ROOT, RedisServer, Worker, wait_until
from tests.support.tasks import TEST_EFFECT

pytestmark = pytest.mark.slow


def _probe(heartbeat: Path, max_age_s: float) -> subprocess.CompletedProcess[str]:
    """The command a Kubernetes exec probe runs."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "services.core.probes",
            "worker-live",
            "--file",
            str(heartbeat),
            "--max-age",
            str(max_age_s),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_liveness_fails_while_the_worker_cannot_consume_and_recovers_with_it(
    settings: Settings, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    own = isolated(settings, tmp_path, redis)
    worker = es_worker(own, tmp_path, WORKER_HEARTBEAT_INTERVAL_S="0.5").start()
    try:
        assert _probe(worker.heartbeat_path, 3).returncode == 0
        # The broker goes away: the process runs on, reconnecting, and consumes nothing.
        redis.stop()
        stalled = wait_until(
            lambda: (p := _probe(worker.heartbeat_path, 3)).returncode == 1 and p,
            30,
            interval_s=0.5,
            what="the liveness probe to fail",
        )
        assert "not consuming" in stalled.stderr
        assert worker.proc is not None and worker.proc.poll() is None
        redis = RedisServer(tmp_path / "redis", port=redis.port).start()
        wait_until(
            lambda: _probe(worker.heartbeat_path, 3).returncode == 0,
            60,
            interval_s=0.5,
            what="the probe to pass once the worker consumes again",
        )
        task = enqueuer(own).enqueue(TEST_EFFECT.name, {"key": "after-reconnect"})
        repo = TaskLogRepository(session_factory(own.database_url))
        assert wait_finished(repo, task.task_id).status == "success"
    finally:
        worker.stop()
        redis.stop()


def test_a_worker_without_bounded_sigterm_refuses_to_start(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        worker = Worker(
            "services.es_worker", "es", tmp_path, env={"REDIS_URL": redis.url, "REMAP_SIGTERM": ""}
        )
        with pytest.raises(RuntimeError, match="worker exited early"):
            worker.start()
        assert worker.proc is not None and worker.proc.wait(30) != 0
        assert "set REMAP_SIGTERM=SIGQUIT in the worker's environment" in worker.log()
    finally:
        redis.stop()
