"""A caller's page of tasks costs the same however long the log and the caller's history.

The log is filled with 200,000 rows over 100 users (the benchmark's fill, 2,000 rows a
user); the first page of one user's tasks, and a later page through its cursor, must be read
from the user/customer/created index in order, not gathered and sorted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from services.core.db import session_factory
from services.core.tasklog.queries import TaskFilter, TaskQueries, encode_cursor, page_statement
from tests.support.databases import own_database
from tools.bench.tasklog_scale import ROWS, USERS

N = 200_000


@pytest.fixture(scope="module")
def filled() -> Iterator[str]:
    with own_database("pages") as url:
        sessions = session_factory(url)
        with sessions() as session, session.begin():
            session.execute(text(ROWS), {"users": USERS, "first": 0, "last": N - 1, "top": N})
            session.execute(text("ANALYZE task_log"))
        yield url


def _plan(url: str, f: TaskFilter, cursor: str | None) -> str:
    sessions = session_factory(url)
    stmt = page_statement(f, limit=50, cursor=cursor)
    with sessions() as session:
        compiled = stmt.compile(
            dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
        )
        return "\n".join(r[0] for r in session.execute(text(f"EXPLAIN {compiled}")))


def test_a_callers_pages_are_read_in_index_order(filled: str) -> None:
    mine = TaskFilter(user_id="user-7", customer_id="cust-7")
    rows, cursor = TaskQueries(session_factory(filled)).page(mine, limit=50)
    assert len(rows) == 50 and cursor is not None
    assert [r.created_at for r in rows] == sorted((r.created_at for r in rows), reverse=True)
    for page_cursor in (None, encode_cursor(rows[-1])):
        plan = _plan(filled, mine, page_cursor)
        assert "ix_task_log_user_customer_created" in plan, plan
        assert "Sort" not in plan, plan
