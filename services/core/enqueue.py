"""The API side of a task: write the log row first, then publish."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from services.core import metrics
from services.core.config import Settings
from services.core.secrecy import Sealer, find_secret_fields
from services.core.taskdefs import Queue, spec_for
from services.core.tasklog.models import FAIR_SHARE, TaskLog, utcnow
from services.core.tasklog.repository import (
    BeforeInsert,
    TaskLogRepository,
    accepted_values,
    forget_idempotency_key,
    idempotency_holder,
    insert_accepted,
)

log = logging.getLogger("services.enqueue")


@dataclass(frozen=True)
class Enqueued:
    """An accepted task: its id, and whether the broker took the message yet."""

    task_id: str
    task_name: str
    published: bool
    # True when an Idempotency-Key repeat returned an earlier task instead of a new one.
    replayed: bool = False
    # True when the task waits its turn in the log (its customer is at its fair-share bound):
    # accepted, published by a worker or the releaser when its turn comes.
    waiting: bool = False


class AcceptOptions(TypedDict, total=False):
    """Who and what an accepted write is for, beside its task and payload."""

    user_id: str | None
    customer_id: str | None
    # Sealed in the row, never in the message (an embeddings `api_key`, say).
    secrets: Mapping[str, str] | None
    # A repeat of the key with the same `request_hash` returns the first task.
    idempotency_key: str | None
    request_hash: str | None
    task_id: str | None


class IdempotencyConflict(ValueError):
    """An idempotency key reused for a different request."""


def request_hash(task_name: str, request: Mapping[str, Any]) -> str:
    """A stable hash of what was asked, to tell a repeat from a different request."""
    canonical = json.dumps({"task": task_name, "request": request}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


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
        self._fair = settings.fair_share

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The task log's session factory (for readers deciding what to enqueue)."""
        return self._repo.sessions

    def enqueue(
        self,
        task_name: str,
        payload: Mapping[str, Any],
        *,
        retry_of: RetryOf | None = None,
        **options: Unpack[AcceptOptions],
    ) -> Enqueued:
        """Record the task as pending, then publish it.

        A failed publish leaves the row pending (the reconciler republishes it) and still
        returns the task id: once the row is committed the write is accepted and not lost.
        A repeat of an `idempotency_key` with the same `request_hash` returns the earlier task;
        with another hash it raises IdempotencyConflict.
        """
        create = self._accepted(task_name, payload, retry_of, options)
        # `now` (this process's) judges an idempotency key's age; the row's times are the
        # database's.
        spec, body, now = spec_for(task_name), create["payload"], create.pop("now")
        task_id = create["task_id"]
        # Noted as published in the same commit; taken back if the publish fails.
        create["published"] = True
        try:
            row = self._repo.create(**create)
        except IntegrityError:
            key = options.get("idempotency_key")
            if key is None:
                raise
            earlier = self._earlier(
                options.get("customer_id"), key, options.get("request_hash"), now
            )
            if earlier is not None:
                return earlier
            row = self._repo.create(**create)
        metrics.ENQUEUED.labels(spec.name, spec.queue).inc()
        if row.held:
            metrics.FAIR_SHARE_WAITS.labels(spec.queue).inc()
            return Enqueued(task_id, spec.name, published=False, waiting=True)
        published = self.publish(task_id, spec.name, spec.queue, body)
        return Enqueued(task_id, spec.name, published=published)

    def publish(self, task_id: str, task_name: str, queue: str, payload: dict[str, Any]) -> bool:
        """Send the message of a recorded task; False if the broker did not take it.

        A failed publish is counted and logged and the row's note taken back; the task stays
        pending and the reconciler republishes it.
        """
        try:
            self._celery.send_task(
                task_name, kwargs={"payload": payload}, task_id=task_id, queue=str(queue)
            )
        except (OperationalError, KombuError, RedisError, OSError) as exc:
            metrics.ENQUEUE_PUBLISH_FAILURES.labels(task_name, queue).inc()
            log.warning(
                "publish failed; task stays pending for the reconciler",
                extra={"task_id": task_id, "task_name": task_name, "error": type(exc).__name__},
            )
            self._unpublished(task_id, task_name)
            return False
        return True

    def _accepted(
        self,
        task_name: str,
        payload: Mapping[str, Any],
        retry_of: RetryOf | None,
        options: AcceptOptions,
    ) -> dict[str, Any]:
        """What recording an accepted task takes (`TaskLogRepository.create`'s arguments),
        checked: a payload with a secret-looking field or that JSON cannot carry is refused."""
        spec = spec_for(task_name)
        body = dict(payload)
        leaked = find_secret_fields(body)
        if leaked:
            raise ValueError(f"secret fields belong in `secrets`, not the payload: {leaked}")
        json.dumps(body)  # refuse what the JSON serializer could not carry, before storing
        now = self._clock()
        ordering = spec.ordering
        return dict(
            task_id=options.get("task_id") or str(uuid.uuid4()),
            task_name=spec.name,
            queue=spec.queue,
            payload=body,
            # From acceptance, by the database's clock.
            budget_s=self._settings.retry_budget_s(spec.queue),
            user_id=options.get("user_id"),
            customer_id=options.get("customer_id"),
            idempotency_key=options.get("idempotency_key"),
            sealed_secrets=self._sealer.seal(options.get("secrets") or {}),
            request_hash=options.get("request_hash"),
            retry_of=retry_of.task_id if retry_of else None,
            seq=retry_of.seq if retry_of else None,
            origin_task_id=retry_of.origin_task_id if retry_of else None,
            origin_seq=retry_of.origin_seq if retry_of else None,
            prior_keys=retry_of.prior_keys if retry_of else None,
            checkpoint=retry_of.checkpoint if retry_of else None,
            order_scope=ordering.scope_of(body) if ordering else None,
            order_key=ordering.key_of(body) if ordering else None,
            before_insert=_ACCEPT_HOOKS.get(spec.name),
            fair_bound=self._fair_bound(spec.queue, options.get("customer_id")),
            now=now,
        )

    def accept_in(
        self,
        session: Session,
        task_name: str,
        payload: Mapping[str, Any],
        **options: Unpack[AcceptOptions],
    ) -> Enqueued:
        """Record the task inside `session`'s transaction; publish nothing (the outbox).

        The row and what its acceptance hook records commit or roll back with that
        transaction. On PostgreSQL its `seq` is drawn again while the transaction commits,
        so acceptance order is commit order. Idempotency keys behave as in `enqueue`; the
        insert that may meet a used key runs in a SAVEPOINT, so a repeat leaves the caller's
        transaction usable and the hook's state of the refused row undone.
        """
        create = self._accepted(task_name, payload, None, options)
        body, hook, now = create.pop("payload"), create.pop("before_insert"), create.pop("now")
        fair_bound = create.pop("fair_bound")
        values = accepted_values(
            **create, seq_pending=session.get_bind().dialect.name == "postgresql"
        )
        key = options.get("idempotency_key")
        if key is None:
            row = insert_accepted(session, values, body, hook, fair_bound)
        else:
            try:
                with session.begin_nested():
                    row = insert_accepted(session, values, body, hook, fair_bound)
            except IntegrityError:
                holder = idempotency_holder(session, options.get("customer_id"), key)
                earlier = self._replay(
                    holder,
                    options.get("request_hash"),
                    now,
                    lambda t: forget_idempotency_key(session, t),
                )
                if earlier is not None:
                    return earlier
                with session.begin_nested():
                    row = insert_accepted(session, values, body, hook, fair_bound)
        return Enqueued(row.task_id, row.task_name, published=False, waiting=row.held)

    def _fair_bound(self, queue: Queue, customer_id: str | None) -> int | None:
        # The customer's bound on this queue, when its writes are bounded at all.
        if customer_id is None or not self._fair.applies(queue, customer_id):
            return None
        return self._fair.bound_for(customer_id)

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
        return self._replay(row, request_hash, now, self._repo.release_idempotency_key)

    def _replay(
        self,
        row: TaskLog | None,
        request_hash: str | None,
        now: datetime,
        release: Callable[[str], None],
    ) -> Enqueued | None:
        # `row` holds the key our insert met; None when it was released meanwhile.
        if row is None:
            return None  # released between our insert and this read; try once more
        if (now - row.created_at).total_seconds() > self._settings.idempotency_key_ttl_s:
            release(row.task_id)
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflict(
                "this Idempotency-Key was used for a different request; use a new key"
            )
        return Enqueued(
            row.task_id,
            row.task_name,
            published=row.published_at is not None,
            replayed=True,
            waiting=row.held and row.wait_reason == FAIR_SHARE,
        )
