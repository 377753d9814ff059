"""task checkpoints and progress; Elasticsearch delete tombstones and watermarks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.core.tasklog.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_log") as batch:
        batch.add_column(sa.Column("checkpoint", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("progress_done", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("progress_total", sa.Integer(), nullable=True))
    op.create_table(
        "es_tombstones",
        sa.Column("index_name", sa.String(255), primary_key=True),
        sa.Column("doc_id", sa.String(600), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "es_delete_watermarks",
        sa.Column("index_name", sa.String(255), primary_key=True),
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("es_delete_watermarks")
    op.drop_table("es_tombstones")
    with op.batch_alter_table("task_log") as batch:
        batch.drop_column("progress_total")
        batch.drop_column("progress_done")
        batch.drop_column("checkpoint")
