"""Which stored files belong to which task, so they can be removed once it is done."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, String, and_, delete, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from services.core.db import transaction
from services.core.storage.base import Storage, StoredFile
from services.core.tasklog.models import TERMINAL, Base, TaskLog, UTCDateTime, utcnow

log = logging.getLogger("services.storage")


class StoredFileRecord(Base):
    """A stored upload and the task that uses it."""

    __tablename__ = "stored_files"
    ref: Mapped[str] = mapped_column(String(600), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StoredFiles:
    """Records uploads by task and cleans them up after their task finished."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def record(self, task_id: str, files: list[StoredFile]) -> None:
        """Note that `files` belong to `task_id`."""
        now = utcnow()
        with transaction(self._sessions) as session:
            session.add_all(
                StoredFileRecord(ref=f.ref, task_id=task_id, size=f.size, created_at=now)
                for f in files
            )

    def cleanup(self, storage: Storage, retention_days: int, now: datetime | None = None) -> int:
        """Delete files whose task finished before the retention period, or that no task owns."""
        cutoff = (now or utcnow()) - timedelta(days=retention_days)
        finished = select(TaskLog.task_id).where(
            TaskLog.status.in_([s.value for s in TERMINAL]), TaskLog.finished_at < cutoff
        )
        owned = select(TaskLog.task_id)
        stmt = select(StoredFileRecord.ref).where(
            or_(
                StoredFileRecord.task_id.in_(finished),
                # The upload was stored but its task never got recorded (the request failed).
                and_(StoredFileRecord.task_id.not_in(owned), StoredFileRecord.created_at < cutoff),
            )
        )
        with self._sessions() as session:
            refs = list(session.scalars(stmt))
        removed = 0
        for ref in refs:
            try:
                storage.delete(ref)
            except ValueError:
                # Stored under another backend (STORAGE_BACKEND changed): not ours to remove.
                log.warning("stored file of another storage backend left alone", extra={"ref": ref})
                continue
            with transaction(self._sessions) as session:
                session.execute(delete(StoredFileRecord).where(StoredFileRecord.ref == ref))
            removed += 1
        return removed
