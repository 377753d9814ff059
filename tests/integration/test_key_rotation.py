"""Rotating SECRETS_KEY while tasks are in flight: nothing sealed before it is lost.

The rotation is the one the README describes: the new key goes in front of the old one, and
the processes roll one by one. Tasks sealed with the old key, queued or running while that
happens, still open; tasks accepted after it are sealed with the new key; download links
signed before it still verify. Runs on its own redis-server and task log.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr
from redis import Redis

from services.core.config import Settings
from services.core.db import session_factory
from services.core.storage.local import LocalStorage
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import all_finished, effects, enqueuer, es_worker, isolated
from tests.support.procs import RedisServer, Worker, wait_until
from tests.support.server import running_api
from tests.support.tasks import TEST_EFFECT, trace_key

pytestmark = pytest.mark.slow


def _worker(settings: Settings, log_dir: Path) -> Worker:
    keys = settings.secrets_key.get_secret_value()
    return es_worker(settings, log_dir, SECRETS_KEY=keys, WORKER_SOFT_SHUTDOWN_TIMEOUT_S="20")


def test_a_rotation_with_tasks_in_flight_opens_old_secrets_and_seals_new_ones(
    settings: Settings, tmp_path: Path
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    redis = RedisServer(tmp_path / "redis").start()
    before = isolated(settings, tmp_path, redis).model_copy(update={"secrets_key": SecretStr(old)})
    rotated = before.model_copy(update={"secrets_key": SecretStr(f"{new},{old}")})
    client = Redis.from_url(redis.url, decode_responses=True)
    repo = TaskLogRepository(session_factory(before.database_url))
    try:
        first = _worker(before, tmp_path).start()
        running = enqueuer(before).enqueue(
            TEST_EFFECT.name, {"key": "running", "sleep_s": 3}, secrets={"api_key": "sk-old-run"}
        )
        wait_until(lambda: client.llen(trace_key("started", "running")) == 1, 30, what="start")
        queued = [
            enqueuer(before).enqueue(
                TEST_EFFECT.name, {"key": f"queued-{n}"}, secrets={"api_key": f"sk-old-{n}"}
            )
            for n in range(3)
        ]
        # The roll: a worker with both keys comes up, the old one gets SIGTERM and finishes
        # its running task; the API takes the new keys and accepts more work.
        second = _worker(rotated, tmp_path).start()
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGTERM)
        first.proc.wait(60)
        after = [
            enqueuer(rotated).enqueue(
                TEST_EFFECT.name, {"key": f"after-{n}"}, secrets={"api_key": f"sk-new-{n}"}
            )
            for n in range(3)
        ]
        ids = [running.task_id] + [t.task_id for t in queued + after]
        try:
            rows = wait_until(lambda: all_finished(repo, ids), 60, what="every task")
        finally:
            second.stop()
        keys = ["running"] + [f"queued-{n}" for n in range(3)] + [f"after-{n}" for n in range(3)]
        applied = {key: effects(client, key) for key in keys}
    finally:
        client.close()
        redis.stop()
    assert {r.status for r in rows} == {"success"}
    # Every task opened its secret, old key or new, and applied its effect once.
    assert all(r.result is not None and r.result["secret_seen"] for r in rows)
    assert [applied[k] for k in keys] == [[task_id] for task_id in ids]
    for task in after:
        sealed = repo.get_by_task_id(task.task_id).sealed_secrets  # type: ignore[union-attr]
        assert sealed is not None
        Fernet(new.encode()).decrypt(sealed.encode())
        with pytest.raises(InvalidToken):
            Fernet(old.encode()).decrypt(sealed.encode())


def test_download_links_signed_before_a_rotation_still_verify(
    settings: Settings, tmp_path: Path
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    uploads = str(tmp_path / "uploads")
    before = settings.model_copy(
        update={"secrets_key": SecretStr(old), "storage_local_dir": uploads}
    )
    stored = LocalStorage(before).save(
        io.BytesIO(b"%PDF-1.4 rotated"), filename="a.pdf", content_type="application/pdf",
        max_bytes=1024,
    )  # fmt: skip
    link = urlsplit(LocalStorage(before).url_for(stored.ref, 600))
    path = f"{link.path}?{link.query}"
    rotated = before.model_copy(update={"secrets_key": SecretStr(f"{new},{old}")})
    with running_api(rotated) as api:
        assert api.get(path).content == b"%PDF-1.4 rotated"
    with running_api(before.model_copy(update={"secrets_key": SecretStr(new)})) as api:
        assert api.get(path).status_code == 403  # dropping the old key ends its links
