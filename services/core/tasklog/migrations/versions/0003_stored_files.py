"""stored files of tasks, for cleanup after retention

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.core.tasklog.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("ref", sa.String(600), primary_key=True),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_stored_files_task_id", "stored_files", ["task_id"])


def downgrade() -> None:
    op.drop_table("stored_files")
