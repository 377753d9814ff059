"""Stored uploads are removed once their task has been finished for the retention period."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from pathlib import Path

from services.core.config import Settings
from services.core.db import session_factory
from services.core.storage import StoredFile
from services.core.storage.local import LocalStorage
from services.core.storage.records import StoredFiles
from services.core.tasklog.models import TaskStatus, utcnow
from services.core.tasklog.repository import TaskLogRepository


def _task(repo: TaskLogRepository) -> str:
    task_id = str(uuid.uuid4())
    repo.create(
        task_id=task_id,
        task_name="doc_upload_file",
        queue="http",
        payload={},
        deadline_at=utcnow() + timedelta(hours=1),
    )
    return task_id


def test_cleanup_removes_files_of_long_finished_tasks_and_orphans(
    tmp_path: Path, settings: Settings, sqlite_url: str
) -> None:
    # A database of its own: cleanup looks at every stored file, other tests' included.
    pg_repo = TaskLogRepository(session_factory(sqlite_url))
    storage = LocalStorage(settings.model_copy(update={"storage_local_dir": str(tmp_path / "up")}))
    files = StoredFiles(session_factory(sqlite_url))

    def upload(task_id: str) -> str:
        stored = storage.save(
            io.BytesIO(b"data"), filename="f.pdf", content_type="application/pdf", max_bytes=100
        )
        files.record(task_id, [stored])
        return stored.ref

    old_done, running, orphan = _task(pg_repo), _task(pg_repo), str(uuid.uuid4())
    refs = {
        name: upload(task)
        for name, task in (("old", old_done), ("running", running), ("orphan", orphan))
    }
    pg_repo.claim(old_done)
    pg_repo.update_status(old_done, TaskStatus.SUCCESS, result={}, now=utcnow() - timedelta(days=9))

    # A file kept by another backend (the setting changed) is left alone, not an error.
    foreign = StoredFile("s3:uploads/x.pdf", "x.pdf", "application/pdf", 1, "0" * 64)
    files.record(old_done, [foreign])
    assert files.cleanup(storage, retention_days=7) == 1  # the orphan is still young
    assert files.cleanup(storage, retention_days=7, now=utcnow() + timedelta(days=8)) == 1
    remaining = {p.name for p in (tmp_path / "up").rglob("*.pdf")}
    assert len(remaining) == 1
    with storage.open(refs["running"]) as data:
        assert data.read() == b"data"
