"""The migration goes up and down on both databases."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from services.core.db import session_factory
from services.core.tasklog import migrate
from services.core.tasklog.models import utcnow
from services.core.tasklog.repository import TaskLogRepository
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
    "seq",
    "seq_pending",
    "origin_task_id",
    "origin_seq",
    "prior_keys",
    "order_scope",
    "order_key",
    "held",
    "wait_reason",
    "waiting_for",
    "lease_until",
    "lease_owner",
    "lost_attempts",
}
TABLES = {
    "task_log",
    "es_tombstones",
    "es_delete_watermarks",
    "stored_files",
    "es_caller_versions",
    "task_seq",
    "task_log_instance",
}


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


def test_migrations_keep_to_a_schema_of_their_own_beside_an_applications_tables() -> None:
    """TASKLOG_SCHEMA: the task log and its Alembic history live in their schema, so the
    application's own tables and its own `alembic_version` in `public` are left alone."""
    name = f"durable_mig_{uuid.uuid4().hex[:10]}"
    url = create_pg_database(name)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('the_apps_own')"))
        migrate.upgrade(url, schema="tasklog")
        insp = inspect(engine)
        assert set(insp.get_table_names(schema="tasklog")) >= TABLES | {"alembic_version"}
        assert insp.get_table_names(schema="public") == ["alembic_version"]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
                ("the_apps_own",)
            ]
        migrate.downgrade(url, "base", schema="tasklog")
        assert not TABLES & set(inspect(engine).get_table_names(schema="tasklog"))
        assert inspect(engine).get_table_names(schema="public") == ["alembic_version"]
    finally:
        engine.dispose()
        drop_pg_database(name)


def _rows_keep_their_order_across_the_acceptance_sequence(url: str) -> None:
    migrate.upgrade(url, "0004")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for n in range(3):
                conn.execute(
                    text(
                        "INSERT INTO task_log (task_id, task_name, queue, payload, status, "
                        "retry_count, attempts, deadline_at, created_at, updated_at) VALUES "
                        "(:t, 'es_upsert_product', 'es', '{}', 'pending', 0, 0, :d, :d, :d)"
                    ),
                    {"t": f"old-{n}", "d": utcnow().replace(tzinfo=None)},
                )
        migrate.upgrade(url)
        with engine.connect() as conn:
            old = conn.execute(text("SELECT id, seq FROM task_log ORDER BY id")).all()
        assert [seq for _, seq in old] == [row_id for row_id, _ in old]
    finally:
        engine.dispose()
    repo = TaskLogRepository(session_factory(url))
    repo.create(
        task_id="new",
        task_name="es_upsert_product",
        queue="es",
        payload={},
        deadline_at=utcnow() + timedelta(hours=1),
    )
    new = repo.get_by_task_id("new")
    assert new is not None and new.seq > max(seq for _, seq in old)


def test_existing_rows_keep_their_order_on_postgresql() -> None:
    name = f"durable_mig_{uuid.uuid4().hex[:10]}"
    url = create_pg_database(name)
    try:
        _rows_keep_their_order_across_the_acceptance_sequence(url)
    finally:
        drop_pg_database(name)


def test_existing_rows_keep_their_order_on_sqlite(tmp_path: Path) -> None:
    _rows_keep_their_order_across_the_acceptance_sequence(f"sqlite:///{tmp_path / 'log.db'}")


def _caller_versions_get_their_customer(url: str) -> None:
    migrate.upgrade(url, "0006")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO es_caller_versions (kind, doc_id, version, version_source, "
                    "updated_at) VALUES ('products', 'c-1:item:with:colons', 7, 'version', :d)"
                ),
                {"d": utcnow().replace(tzinfo=None)},
            )
        migrate.upgrade(url)
        with engine.connect() as conn:
            found = conn.execute(text("SELECT customer_id FROM es_caller_versions")).all()
        assert found == [("c-1",)]
    finally:
        engine.dispose()


def test_caller_versions_get_their_customer_on_postgresql() -> None:
    name = f"durable_mig_{uuid.uuid4().hex[:10]}"
    url = create_pg_database(name)
    try:
        _caller_versions_get_their_customer(url)
    finally:
        drop_pg_database(name)


def test_caller_versions_get_their_customer_on_sqlite(tmp_path: Path) -> None:
    _caller_versions_get_their_customer(f"sqlite:///{tmp_path / 'log.db'}")
