"""writes accepted inside a caller's transaction: numbered at its commit; the log's identity

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-01

A caller may record a task through its own database session (the transactional outbox,
`services/core/outbox`). Its row is written when the caller calls us, but the caller's
transaction may commit much later, after transactions that called us after it: acceptance
order must be commit order, so such a row (`seq_pending`) gets its `seq` again while its
transaction commits, from a deferred constraint trigger. The trigger first takes a
transaction-scoped advisory lock per customer of the transaction's pending rows (two-key
form, first key 2002260001, second the customer's hash in 256 buckets, so a transaction of
many customers holds at most 256 such locks; taken in one global order, so that two
committing transactions never wait for each other in a cycle); PostgreSQL releases such
locks only once the commit is durable and visible, so a transaction drawing its number after
ours waits until we have committed: numbers of one customer are drawn in commit order. The
trigger also moves the row's times to the commit (acceptance) time, by the database's clock.

Rows written by the API (no `seq_pending`) do not fire the trigger (its WHEN clause), so the
API's INSERT costs what it did. `task_log_instance` holds a random id of this task log, so a
caller's session can be checked to be bound to the task log the workers read.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None

# SET search_path FROM CURRENT: the function finds the task log where this migration put it
# (TASKLOG_SCHEMA), whatever the search path of the caller's session that commits.
TAKE_SEQ = """
CREATE FUNCTION task_log_seq_at_commit() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    pending record;
    at timestamptz := clock_timestamp();
BEGIN
    FOR pending IN
        SELECT DISTINCT hashtext(coalesce(customer_id, '')) & 255 AS customer_key
        FROM task_log WHERE seq_pending ORDER BY customer_key
    LOOP
        PERFORM pg_advisory_xact_lock(2002260001, pending.customer_key);
    END LOOP;
    -- The first row's trigger numbers every pending row of the transaction, in call order;
    -- the triggers of the others find nothing left to do.
    FOR pending IN SELECT id FROM task_log WHERE seq_pending ORDER BY id LOOP
        UPDATE task_log
        SET seq = nextval('task_log_seq'),
            seq_pending = false,
            deadline_at = deadline_at + (at - created_at),
            created_at = at,
            updated_at = at,
            published_at = at
        WHERE id = pending.id;
    END LOOP;
    RETURN NULL;
END
$$
"""
TRIGGER = """
CREATE CONSTRAINT TRIGGER task_log_seq_at_commit
AFTER INSERT ON task_log
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.seq_pending)
EXECUTE FUNCTION task_log_seq_at_commit()
"""


def upgrade() -> None:
    with op.batch_alter_table("task_log") as batch:
        batch.add_column(
            sa.Column("seq_pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index(
        "ix_task_log_seq_pending",
        "task_log",
        ["id"],
        postgresql_where=sa.text("seq_pending"),
        sqlite_where=sa.text("seq_pending"),
    )
    instance = op.create_table(
        "task_log_instance", sa.Column("instance_id", sa.String(36), primary_key=True)
    )
    op.bulk_insert(instance, [{"instance_id": str(uuid.uuid4())}])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TAKE_SEQ)
        op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER task_log_seq_at_commit ON task_log")
        op.execute("DROP FUNCTION task_log_seq_at_commit()")
    op.drop_table("task_log_instance")
    op.drop_index("ix_task_log_seq_pending", table_name="task_log")
    with op.batch_alter_table("task_log") as batch:
        batch.drop_column("seq_pending")
