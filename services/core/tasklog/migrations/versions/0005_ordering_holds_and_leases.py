"""one version domain (acceptance sequence), per-entity ordering, waits held in the log, leases

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Existing rows get `seq = id`, so their acceptance order is kept, and the sequence continues
after the highest id. Existing tombstones and delete-all watermarks need no change: they hold
versions of the old domains (caller versions and acceptance microseconds, all below 2**62),
and every write accepted from now on has a version of 2**62 + seq, above all of them, so the
old memory still refuses old writes in flight and never refuses a new one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.core.tasklog.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UNFINISHED = "status NOT IN ('success', 'failed')"
PARTIAL = {
    "ix_task_log_order_open": (
        ["order_scope", "seq"],
        f"order_scope IS NOT NULL AND {UNFINISHED}",
    ),
    "ix_task_log_order_done": (
        ["order_scope", "seq"],
        "order_scope IS NOT NULL AND status = 'success'",
    ),
    "ix_task_log_held_seq": (["queue", "wait_reason", "seq"], "held"),
    "ix_task_log_held_due": (["queue", "wait_reason", "next_attempt_at"], "held"),
    "ix_task_log_held_deadline": (["queue", "deadline_at"], "held"),
    "ix_task_log_waiting_for": (["waiting_for"], "held AND waiting_for IS NOT NULL"),
}


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        op.execute("CREATE SEQUENCE task_log_seq AS BIGINT")
    op.create_table(
        "task_seq",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("task_log") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("origin_task_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("order_scope", sa.String(300), nullable=True))
        batch.add_column(sa.Column("order_key", sa.String(600), nullable=True))
        batch.add_column(sa.Column("held", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("wait_reason", sa.String(64), nullable=True))
        batch.add_column(sa.Column("waiting_for", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(255), nullable=True))
    op.execute("UPDATE task_log SET seq = id")
    if postgres:
        op.execute(
            "SELECT setval('task_log_seq', (SELECT COALESCE(MAX(id), 0) + 1 FROM task_log), false)"
        )
        op.alter_column(
            "task_log",
            "seq",
            nullable=False,
            server_default=sa.text("nextval('task_log_seq')"),
        )
    else:
        # Start SQLite's counter after the highest id, as the sequence does on PostgreSQL.
        op.execute("INSERT INTO task_seq (id) SELECT MAX(id) FROM task_log WHERE id IS NOT NULL")
        op.execute("DELETE FROM task_seq")
        with op.batch_alter_table("task_log") as batch:
            batch.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
    for name, (columns, where) in PARTIAL.items():
        op.create_index(
            name,
            "task_log",
            columns,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )
    op.create_table(
        "es_caller_versions",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("doc_id", sa.String(600), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("version_source", sa.String(16), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("es_caller_versions")
    for name in PARTIAL:
        op.drop_index(name, table_name="task_log")
    with op.batch_alter_table("task_log") as batch:
        for column in (
            "lease_owner",
            "lease_until",
            "waiting_for",
            "wait_reason",
            "held",
            "order_key",
            "order_scope",
            "origin_task_id",
            "seq",
        ):
            batch.drop_column(column)
    op.drop_table("task_seq")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE task_log_seq")
