"""Fair share at acceptance: the INSERT that decides, in the same statement, whether a write
goes to the queue or waits for its turn in the log.

A customer's write waits (`held`, `wait_reason` `fair_share`, no broker message) when the
customer already has its bound of outstanding work on the queue, or when earlier writes of
its already wait there (they go first). The count stops at the bound (`LIMIT`), on a partial
index of unfinished rows, so a customer with a long import costs no more than one with none.
Deciding inside the INSERT costs no round trip, and the count is the log itself: no counter
to drift or to repair after a crash. Writes accepted at the same moment do not see each other
(READ COMMITTED), so a customer may pass its bound by the requests it has in flight at once.
"""

from __future__ import annotations

import functools
from typing import cast

from sqlalchemy import (
    BindParameter,
    Integer,
    Subquery,
    Table,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
)

from services.core.db import DriverStatement
from services.core.tasklog.clock import clock
from services.core.tasklog.models import (
    FAIR_COUNTED_SQL,
    FAIR_SHARE,
    FAIR_WAITING_SQL,
    TaskLog,
)
from services.core.tasklog.statements import INSERTED, accepted_columns

_TABLE = cast(Table, TaskLog.__table__)
# Columns the statement computes instead of taking them from the caller.
_DECIDED = frozenset({"held", "wait_reason", "published_at"})


def counted_rows(
    customer: BindParameter[str], queue: BindParameter[str], limit: BindParameter[int]
) -> Subquery:
    """A customer's outstanding tasks on a queue, at most `limit` of them (a subquery)."""
    return (
        select(literal_column("1"))
        .select_from(_TABLE)
        .where(_TABLE.c.customer_id == customer, _TABLE.c.queue == queue, text(FAIR_COUNTED_SQL))
        .limit(limit)
        .subquery("counted")
    )


@functools.cache
def admitting_insert(names: tuple[str, ...]) -> DriverStatement:
    """The INSERT of an accepted task with these columns that also decides its turn.

    Its parameters are the row's values plus `fair_bound`; it returns the row's id, seq and
    whether it waits.
    """
    customer: BindParameter[str] = bindparam("customer_id", type_=_TABLE.c.customer_id.type)
    queue: BindParameter[str] = bindparam("queue", type_=_TABLE.c.queue.type)
    bound = bindparam("fair_bound", type_=Integer())
    busy = select(func.count()).select_from(counted_rows(customer, queue, bound))
    earlier = (
        exists()
        .select_from(_TABLE)
        .where(text(FAIR_WAITING_SQL), _TABLE.c.queue == queue, _TABLE.c.customer_id == customer)
    )
    verdict = select(or_(busy.scalar_subquery() >= bound, earlier).label("wait")).cte("verdict")
    wait = select(verdict.c.wait).scalar_subquery()
    values = {
        name: value for name, value in accepted_columns(names).items() if name not in _DECIDED
    }
    values.update(
        customer_id=customer,
        queue=queue,
        held=wait,
        wait_reason=case((wait, literal(FAIR_SHARE)), else_=null()),
        # Noted as published in the same commit unless it waits: it has no message then.
        published_at=case((wait, null()), else_=clock("at")) if "published" in names else null(),
    )
    return DriverStatement(
        insert(_TABLE).values(values).add_cte(verdict).returning(*INSERTED, _TABLE.c.held)
    )
