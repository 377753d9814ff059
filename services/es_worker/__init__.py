"""Elasticsearch worker: `celery -A services.es_worker worker -Q es`."""

# First: the multiprocess metrics directory must be ready before any metric exists.
from services.core.observability import boot  # noqa: F401

# isort: split

import asyncio
import logging
from typing import Any

from celery.signals import worker_ready

from services.core import canary  # noqa: F401  (registers the es canary)
from services.core.celery_app import app
from services.core.config import get_settings
from services.core.observability.worker import ProcessKind, instrument_worker
from services.core.search.runtime import make_writer
from services.es_worker import tasks

log = logging.getLogger("services.es_worker")
instrument_worker(ProcessKind.ES_WORKER)


async def _create_indices() -> list[str]:
    writer = make_writer(get_settings())
    try:
        return await writer.ensure_indices()
    finally:
        await writer.aclose()


@worker_ready.connect  # type: ignore[untyped-decorator]
def _create_indices_at_start(**_: Any) -> None:
    # Create missing indices with our mappings before the first write needs them; if ES is
    # down now, each write creates what is missing before it writes.
    try:
        created = asyncio.run(_create_indices())
    except Exception as exc:  # a start-up convenience: never stop the worker for it
        log.warning("catalog indices not ensured at start: %s", type(exc).__name__)
    else:
        log.info("catalog indices ready", extra={"indices": created})


__all__ = ["app", "tasks"]
