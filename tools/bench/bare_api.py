"""The bare baselines of the enqueue benchmark: FastAPI alone, and FastAPI plus Celery.

Both validate the same bodies as the project's API (they use its request models), and answer
202. `BARE_SEND=1` adds a Celery `send_task` with the project's Celery settings (same broker,
same options), but no task log, no authentication and no idempotency: what the plan's API
would do. Served by uvicorn:

    BARE_SEND=1 uvicorn tools.bench.bare_api:app --port 8100
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated

from fastapi import FastAPI, Form, Path, status

from services.api.routes.catalog import UpsertBody
from services.core.config import get_settings
from tools.bench.bare_worker import bare_celery

SEND = os.environ.get("BARE_SEND") == "1"
app = FastAPI(title="bare baseline")
celery = bare_celery(get_settings()) if SEND else None


def _queue(task: str, payload: dict[str, object], queue: str) -> str:
    task_id = str(uuid.uuid4())
    if celery is not None:
        celery.send_task(task, kwargs={"payload": payload}, task_id=task_id, queue=queue)
    return task_id


@app.put("/api/v1/products/{item_id}", status_code=status.HTTP_202_ACCEPTED)
def upsert(item_id: Annotated[str, Path(max_length=256)], body: UpsertBody) -> dict[str, str]:
    """The same request as the project's catalog upsert."""
    payload: dict[str, object] = {
        "customer_id": body.customer_id,
        "item_id": item_id,
        "data": body.data,
    }
    return {"status": "queued", "task_id": _queue("bare_noop", payload, "bare")}


@app.post("/api/v1/mobile-faq", status_code=status.HTTP_202_ACCEPTED)
def faq_create(
    customer_id: Annotated[str, Form()],
    question: Annotated[str, Form(min_length=1, max_length=1000)],
    answer: Annotated[str, Form(min_length=1, max_length=10000)],
) -> dict[str, str]:
    """The same form as the project's FAQ create."""
    payload: dict[str, object] = {
        "customer_id": customer_id,
        "question": question,
        "answer": answer,
    }
    return {"status": "queued", "task_id": _queue("bare_noop", payload, "bare")}
