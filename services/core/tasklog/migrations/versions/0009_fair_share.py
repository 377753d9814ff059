"""fair share per customer: indexes of a customer's outstanding work and of its waiting writes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

A write is accepted straight to the queue while its customer has fewer outstanding tasks on
that queue than its bound, else it waits in the task log (`held`, `wait_reason` `fair_share`).
The acceptance INSERT counts the customer's outstanding work (at most up to the bound) and
asks whether any of its writes already wait; both are index probes of partial indexes that
hold only unfinished and only waiting rows, so they cost the same however long the log.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# As in services/core/tasklog/models.py (a migration keeps the text it was written with).
COUNTED = (
    "status NOT IN ('success', 'failed') AND NOT (held AND wait_reason IN ('fair_share', 'order'))"
)
WAITING = "held AND wait_reason = 'fair_share'"
PARTIAL = {
    "ix_task_log_fair_counted": (["customer_id", "queue"], COUNTED),
    "ix_task_log_fair_waiting": (["queue", "customer_id", "seq"], WAITING),
}


def upgrade() -> None:
    for name, (columns, where) in PARTIAL.items():
        op.create_index(
            name,
            "task_log",
            columns,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )


def downgrade() -> None:
    for name in PARTIAL:
        op.drop_index(name, table_name="task_log")
