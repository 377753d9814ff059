"""lost attempts per task: a delivery that killed or hung its worker is counted, durably

Revision ID: 0008
Revises: 0010
Create Date: 2026-12-06

An attempt whose pool process died (killed, out of memory) or hung past its hard time limit
records nothing itself. The main process (or the next claim, when the whole worker died)
counts it here, by task id; at POISON_MAX_LOST_ATTEMPTS the task fails for good as `poison`
instead of taking another worker down with it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "task_log",
        sa.Column("lost_attempts", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("task_log") as batch:
        batch.drop_column("lost_attempts")
