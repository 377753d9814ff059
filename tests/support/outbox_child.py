"""A caller process that dies between its commit and the publish (the outbox crash test).

    python -m tests.support.outbox_child CUSTOMER ITEM NAME MARKER

It changes its own row and queues `upsert_product` in one transaction, commits, and then,
where the publishing thread would publish, writes the committed task ids to MARKER and
waits there until it is killed. Its task log and broker come from the environment
(DATABASE_URL, REDIS_URL, REDIS_KEY_PREFIX), as for any deployment.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from services.core.outbox import publisher
from services.core.search.facade import upsert_product
from tests.support.outbox import SET_NAME


def main(customer: str, item: str, name: str, marker: Path) -> None:
    def killed_here(task_ids: list[str]) -> None:
        marker.write_text(json.dumps(task_ids))
        threading.Event().wait()  # until SIGKILL

    publisher.before_publish = killed_here
    engine = create_engine(os.environ["DATABASE_URL"])
    with Session(engine) as session:
        session.execute(SET_NAME, {"id": item, "name": name})
        data = {"id": item, "name": name}
        asyncio.run(upsert_product(customer, data, with_embedding=False, session=session))
        session.commit()
    threading.Event().wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))
