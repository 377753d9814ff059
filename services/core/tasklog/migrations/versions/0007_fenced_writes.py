"""fenced writes: redrives as new writes, an ordering index over every write, caller versions
by customer

Revision ID: 0007
Revises: 0009
Create Date: 2026-12-06

- `task_log.origin_seq`: the place in acceptance order of the write a redrive re-sends (a
  redrive runs at a new place, `seq`, and answers for the original's: a later write is one
  whose original place is later).
- `task_log.prior_keys`: the Idempotency-Keys an earlier incarnation of the write may have
  used downstream (the original, earlier redrives), tried before the redrive's own.
- `ix_task_log_order_scope`: every write of an ordering scope by `seq`, whatever its status:
  a redrive is refused once a later write of the entity exists (finished or not). It
  replaces `ix_task_log_order_done` (successes only), whose one reader is gone.
- `es_caller_versions.customer_id`: a delete-all clears the caller versions of its customer.

Catalog writes accepted from now on carry an ordering scope (a delete-all waits for the
earlier unfinished writes of its customer); writes accepted before this revision carry
none, and are still fenced by the delete memory.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_log") as batch:
        batch.add_column(sa.Column("origin_seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("prior_keys", sa.JSON(), nullable=True))
    op.drop_index("ix_task_log_order_done", table_name="task_log")
    op.create_index(
        "ix_task_log_order_scope",
        "task_log",
        ["order_scope", "seq"],
        postgresql_where=sa.text("order_scope IS NOT NULL"),
        sqlite_where=sa.text("order_scope IS NOT NULL"),
    )
    with op.batch_alter_table("es_caller_versions") as batch:
        batch.add_column(sa.Column("customer_id", sa.String(128), nullable=True))
    # Document ids are `<customer_id>:<item_id>`; customer ids hold no ':'.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE es_caller_versions SET customer_id = split_part(doc_id, ':', 1)")
    else:
        op.execute(
            "UPDATE es_caller_versions SET customer_id = substr(doc_id, 1, instr(doc_id, ':') - 1)"
        )
    with op.batch_alter_table("es_caller_versions") as batch:
        batch.alter_column("customer_id", existing_type=sa.String(128), nullable=False)
    op.create_index("ix_es_caller_versions_customer", "es_caller_versions", ["kind", "customer_id"])


def downgrade() -> None:
    op.drop_index("ix_es_caller_versions_customer", table_name="es_caller_versions")
    with op.batch_alter_table("es_caller_versions") as batch:
        batch.drop_column("customer_id")
    op.drop_index("ix_task_log_order_scope", table_name="task_log")
    op.create_index(
        "ix_task_log_order_done",
        "task_log",
        ["order_scope", "seq"],
        postgresql_where=sa.text("order_scope IS NOT NULL AND status = 'success'"),
        sqlite_where=sa.text("order_scope IS NOT NULL AND status = 'success'"),
    )
    with op.batch_alter_table("task_log") as batch:
        batch.drop_column("prior_keys")
        batch.drop_column("origin_seq")
