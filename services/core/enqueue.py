"""The API side of a task: write the log row first, then publish."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from services.core import metrics
from services.core.config import Settings
from services.core.secrecy import Sealer, find_secret_fields
from services.core.taskdefs import spec_for
from services.core.tasklog.models import utcnow
from services.core.tasklog.repository import BeforeInsert, TaskLogRepository

log = logging.getLogger("services.enqueue")


@dataclass(frozen=True)
class Enqueued:
    """An accepted task: its id, and whether the broker took the message yet."""

    task_id: str
    task_name: str
    published: bool
    # True when an Idempotency-Key repeat returned an earlier task instead of a new one.
    replayed: bool = False


class IdempotencyConflict(ValueError):
    """An idempotency key reused for a different request."""


@dataclass(frozen=True)
class RetryOf:
    """The write a manual retry retries, and what the retry keeps of it.

    A retry of a versioned write keeps its place (`seq`, its version); a retry of a write
    without versions is a new write (`seq` None: drawn now) standing in the original's place
    (`origin_seq`), which first tries the Idempotency-Keys of the write's earlier
    incarnations (`prior_keys`).
    """

    task_id: str
    seq: int | None
    origin_task_id: str
    checkpoint: dict[str, Any] | None = None
    origin_seq: int | None = None
    prior_keys: list[str] | None = None


# Acceptance hooks by task name: run inside the transaction that records the task (see
# `TaskLogRepository.create`); a domain registers one to keep related state atomic with it.
_ACCEPT_HOOKS: dict[str, BeforeInsert] = {}


def on_accept(task_names: list[str], hook: BeforeInsert) -> None:
    """Run `hook` in the acceptance transaction of every task named."""
    for name in task_names:
        _ACCEPT_HOOKS[name] = hook


class Enqueuer:
    """Accepts tasks: durable row first, message second."""

    def __init__(
        self,
        *,
        repo: TaskLogRepository,
        celery: Celery,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._repo = repo
        self._celery = celery
        self._settings = settings
        self._sealer = Sealer(settings.secrets_key.get_secret_value())
        self._clock = clock

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The task log's session factory (for readers deciding what to enqueue)."""
        return self._repo.sessions

    def enqueue(
        self,
        task_name: str,
        payload: Mapping[str, Any],
        *,
        user_id: str | None = None,
        customer_id: str | None = None,
        secrets: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        task_id: str | None = None,
        retry_of: RetryOf | None = None,
    ) -> Enqueued:
        """Record the task as pending, then publish it.

        A failed publish leaves the row pending (the reconciler republishes it) and still
        returns the task id: once the row is committed the write is accepted and not lost.
        A repeat of an `idempotency_key` with the same `request_hash` returns the earlier task;
        with another hash it raises IdempotencyConflict.
        """
        spec = spec_for(task_name)
        body = dict(payload)
        leaked = find_secret_fields(body)
        if leaked:
            raise ValueError(f"secret fields belong in `secrets`, not the payload: {leaked}")
        json.dumps(body)  # refuse what the JSON serializer could not carry, before storing
        task_id = task_id or str(uuid.uuid4())
        now = self._clock()
        ordering = spec.ordering
        create = dict(
            task_id=task_id,
            task_name=spec.name,
            queue=spec.queue,
            payload=body,
            # From acceptance by the database's clock.
            budget_s=self._settings.retry_budget_s(spec.queue),
            user_id=user_id,
            customer_id=customer_id,
            idempotency_key=idempotency_key,
            sealed_secrets=self._sealer.seal(secrets or {}),
            request_hash=request_hash,
            retry_of=retry_of.task_id if retry_of else None,
            seq=retry_of.seq if retry_of else None,
            origin_task_id=retry_of.origin_task_id if retry_of else None,
            origin_seq=retry_of.origin_seq if retry_of else None,
            prior_keys=retry_of.prior_keys if retry_of else None,
            checkpoint=retry_of.checkpoint if retry_of else None,
            order_scope=ordering.scope_of(body) if ordering else None,
            order_key=ordering.key_of(body) if ordering else None,
            before_insert=_ACCEPT_HOOKS.get(spec.name),
            # Noted as published in the same commit; taken back if the publish fails.
            published=True,
        )
        try:
            self._repo.create(**create)  # type: ignore[arg-type]
        except IntegrityError:
            if idempotency_key is None:
                raise
            earlier = self._earlier(customer_id, idempotency_key, request_hash, now)
            if earlier is not None:
                return earlier
            self._repo.create(**create)  # type: ignore[arg-type]
        metrics.ENQUEUED.labels(spec.name, spec.queue).inc()
        try:
            self._celery.send_task(
                spec.name, kwargs={"payload": body}, task_id=task_id, queue=spec.queue.value
            )
        except (OperationalError, KombuError, RedisError, OSError) as exc:
            metrics.ENQUEUE_PUBLISH_FAILURES.labels(spec.name, spec.queue).inc()
            log.warning(
                "publish failed; task stays pending for the reconciler",
                extra={"task_id": task_id, "task_name": spec.name, "error": type(exc).__name__},
            )
            self._unpublished(task_id, spec.name)
            return Enqueued(task_id, spec.name, published=False)
        return Enqueued(task_id, spec.name, published=True)

    def _unpublished(self, task_id: str, task_name: str) -> None:
        # The row was written as published (one commit per accepted write, not two): take the
        # note back. It is a note only: the write is accepted, and the reconciler finds the
        # task by its silence, not by this column, so a failure here is logged, not raised.
        try:
            self._repo.mark_unpublished(task_id)
        except SQLAlchemyError as exc:
            log.warning(
                "the failed publish could not be noted",
                extra={"task_id": task_id, "task_name": task_name, "error": type(exc).__name__},
            )

    def reserve(self, task_name: str, payload: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """A place in acceptance order for a write done now, without a task (async_mode=False).

        The task's acceptance hook runs in the same transaction, as for a queued write; the
        returned payload is the one to carry out.
        """
        hook = _ACCEPT_HOOKS.get(spec_for(task_name).name)
        return self._repo.reserve(dict(payload), hook)

    def _earlier(
        self, customer_id: str | None, key: str, request_hash: str | None, now: datetime
    ) -> Enqueued | None:
        # The unique index refused our row: a task already holds this key.
        row = self._repo.find_by_idempotency_key(customer_id, key)
        if row is None:
            return None  # released between our insert and this read; try once more
        if (now - row.created_at).total_seconds() > self._settings.idempotency_key_ttl_s:
            self._repo.release_idempotency_key(row.task_id)
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflict(
                "this Idempotency-Key was used for a different request; use a new key"
            )
        return Enqueued(
            row.task_id, row.task_name, published=row.published_at is not None, replayed=True
        )
