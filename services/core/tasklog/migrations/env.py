"""Alembic environment: the URL and the schema come from the caller or from the settings.

With a schema (TASKLOG_SCHEMA) on PostgreSQL, the task log, its sequence, its trigger
function and its own `alembic_version` live in that schema, created when missing: the
database may be an application's own, with its own tables and Alembic history.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from services.core.config import get_settings
from services.core.tasklog.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
schema = config.get_main_option("tasklog_schema", get_settings().tasklog_schema) or None


def run_offline() -> None:
    context.configure(
        url=url, target_metadata=Base.metadata, literal_binds=True, version_table_schema=schema
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        if schema and connection.dialect.name == "postgresql":
            # Alembic's recipe for a schema of one's own: every unqualified name the
            # migrations create or use resolves to it.
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            connection.execute(text(f'SET search_path TO "{schema}"'))
            connection.commit()
            connection.dialect.default_schema_name = schema
        # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds the table.
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            version_table_schema=schema if connection.dialect.name == "postgresql" else None,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
