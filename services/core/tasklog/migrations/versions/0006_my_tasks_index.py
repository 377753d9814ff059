"""an index for a caller's own tasks, newest first: my-tasks stays flat as the log grows

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

`GET /api/v1/tasks/my-tasks` filters on the caller's user and customer and reads the newest
first. With one index per column PostgreSQL intersects both and sorts every task of that user
(the benchmark's 1,000,000-row log: 17 -> 41 ms median as a user's history grew); with both
columns and the order in one index it reads just the page. A user belongs to one customer:
PostgreSQL's planner takes the two filters as independent unless told (extended statistics),
then underestimates a user's rows and sorts them all instead of reading the index in order.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_task_log_user_customer_created",
        "task_log",
        ["user_id", "customer_id", "created_at", "id"],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE STATISTICS IF NOT EXISTS task_log_user_customer (dependencies) "
            "ON user_id, customer_id FROM task_log"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS task_log_user_customer")
    op.drop_index("ix_task_log_user_customer_created", table_name="task_log")
