"""The migration goes up and down on both databases."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import create_engine, inspect

from services.core.tasklog import migrate
from tests.conftest import create_pg_database, drop_pg_database

COLUMNS = {
    "id",
    "task_id",
    "task_name",
    "queue",
    "user_id",
    "customer_id",
    "idempotency_key",
    "payload",
    "sealed_secrets",
    "status",
    "result",
    "error_message",
    "error_kind",
    "failure_reason",
    "retry_count",
    "attempts",
    "next_attempt_at",
    "deadline_at",
    "published_at",
    "created_at",
    "updated_at",
    "finished_at",
    "checkpoint",
    "progress_done",
    "progress_total",
    "request_hash",
    "retry_of",
}
TABLES = {"task_log", "es_tombstones", "es_delete_watermarks", "stored_files"}


def _check_up_down(url: str) -> None:
    migrate.upgrade(url)
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        assert {c["name"] for c in insp.get_columns("task_log")} == COLUMNS
        assert any(
            u["column_names"] == ["task_id"] for u in insp.get_unique_constraints("task_log")
        )
        assert set(insp.get_table_names()) >= TABLES
        migrate.downgrade(url, "0001")
        insp = inspect(engine)
        assert "checkpoint" not in {c["name"] for c in insp.get_columns("task_log")}
        assert "es_tombstones" not in insp.get_table_names()
        migrate.downgrade(url, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate.upgrade(url)
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migrations_upgrade_and_downgrade_on_postgresql() -> None:
    name = f"durable_mig_{uuid.uuid4().hex[:10]}"
    url = create_pg_database(name)
    try:
        _check_up_down(url)
    finally:
        drop_pg_database(name)


def test_migrations_upgrade_and_downgrade_on_sqlite(tmp_path: Path) -> None:
    _check_up_down(f"sqlite:///{tmp_path / 'tasklog.db'}")
