"""idempotency keys unique per customer; links from manual retries to the failed task

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

WHERE_KEY = sa.text("idempotency_key IS NOT NULL")
WHERE_RETRY = sa.text("retry_of IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("task_log") as batch:
        batch.add_column(sa.Column("request_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("retry_of", sa.String(64), nullable=True))
        batch.drop_index("ix_task_log_customer_idempotency")
    op.create_index(
        "uq_task_log_customer_idempotency",
        "task_log",
        ["customer_id", "idempotency_key"],
        unique=True,
        postgresql_where=WHERE_KEY,
        sqlite_where=WHERE_KEY,
    )
    op.create_index(
        "uq_task_log_retry_of",
        "task_log",
        ["retry_of"],
        unique=True,
        postgresql_where=WHERE_RETRY,
        sqlite_where=WHERE_RETRY,
    )


def downgrade() -> None:
    op.drop_index("uq_task_log_retry_of", table_name="task_log")
    op.drop_index("uq_task_log_customer_idempotency", table_name="task_log")
    with op.batch_alter_table("task_log") as batch:
        batch.create_index("ix_task_log_customer_idempotency", ["customer_id", "idempotency_key"])
        batch.drop_column("retry_of")
        batch.drop_column("request_hash")
