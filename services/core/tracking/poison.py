"""No message can stop a worker: what it cannot decode or hand to its pool is quarantined.

Celery's consumer handles a message in the worker's main process: it decodes the body and
pickles the request to a pool process. An exception there is not the task's, it is the
worker's: Celery calls it an "Unrecoverable error" and exits, the message comes back from
Redis' unacked hash after a restart, and kills the next worker the same way (a body nested
600 levels deep exceeds the recursion limit while pickling; a body of the wrong shape fails
to unpack). Decoding errors Celery does catch are logged with the whole body (customer data)
and the message dropped, while its task stays pending in the log and the reconciler
publishes it again.

`GuardedConsumer` (Celery's `worker_consumer`) puts one guard around each of those places:
the message is acknowledged (removed), its task fails for good as `poison` in the task log
(dead-lettered: the alert fires, the failed list shows it, the reconciler never republishes
a failed task, a redrive can run it again after a fix), the event is counted and logged
without the body, and the worker goes on with the next message. A message without a
readable task id, or whose task has no row, is counted (task "unknown" when its name is not
ours) and logged, then dropped: there is nothing to fail and nothing it could run. An item
that is no kombu message at all (not JSON, no envelope) fails inside the transport, before
any of that: `UnreadableGuard` counts and logs it (without its content) and drops it; if it
stood for a task, that task is still pending in the log, and the reconciler publishes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from queue import Empty
from typing import Any

from celery import bootsteps
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer

from services.core.taskdefs import UnknownTaskError, spec_for
from services.core.tracking.task import runner

log = logging.getLogger("services.tracking.poison")
UNKNOWN = "unknown"


def _why(what: str, exc: BaseException) -> str:
    # The exception's first line only: what went wrong, not the body it went wrong on.
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{what}: {type(exc).__name__}: {first}" if first else f"{what}: {type(exc).__name__}"


def _queue_of(task_name: str | None, delivery_info: Any, consumer: Any) -> str:
    """The queue a poison message came from: its task's, its routing key, or the one queue
    this worker consumes (a metric label: never an arbitrary string)."""
    if task_name:
        try:
            return spec_for(task_name).queue.value
        except UnknownTaskError:
            pass
    consumed = sorted({q.name for q in getattr(consumer.task_consumer, "queues", [])})
    routing_key = delivery_info.get("routing_key") if isinstance(delivery_info, dict) else None
    if routing_key in consumed:
        return str(routing_key)
    return consumed[0] if len(consumed) == 1 else UNKNOWN


def quarantine(task_name: str | None, task_id: str | None, queue: str, why: str) -> None:
    """Fail the message's task as poison; never raises (the worker must go on)."""
    try:
        runner().quarantine(task_name, task_id, queue, why)
    except Exception:  # the task log unreachable, for one: the reconciler brings it back
        log.exception(
            "could not record a poison message; dropped",
            extra={"task_id": task_id, "task_name": task_name, "queue": queue},
        )


def _headers(message: Any) -> dict[str, Any]:
    headers = getattr(message, "headers", None)
    return headers if isinstance(headers, dict) else {}


class UnreadableGuard(bootsteps.StartStopStep):  # type: ignore[misc]
    """Drops a queue item that is no message at all, instead of the worker.

    kombu's Redis channel pops an item (BRPOP), parses its JSON envelope and builds the
    message before any consumer code runs; an exception there ends the worker's event loop.
    The guard wraps the channel's BRPOP reader, its `handlers["BRPOP"]` (kombu's Redis
    transport; other transports have no such handler and are left as they are).
    """

    label = "unreadable guard"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent: Any) -> None:
        channel = getattr(parent.task_consumer, "channel", None)
        handlers = getattr(channel, "handlers", None)
        if not isinstance(handlers, dict) or "BRPOP" not in handlers:
            return
        read = handlers["BRPOP"]
        if getattr(read, "guarded", False):
            return
        queue = _queue_of(None, None, parent)
        # kombu's Redis transport lists KeyError among its connection errors; raised here it
        # is an envelope without a field (a reconnect would not bring the item back).
        keep = (Empty, *(e for e in parent.connection_errors if e is not KeyError))

        def guarded(**options: Any) -> Any:
            try:
                return read(**options)
            except keep:
                raise
            except Exception as exc:  # not JSON, no envelope, a body that is not base64
                quarantine(None, None, queue, _why("no message at all", exc))
                return True

        guarded.guarded = True  # type: ignore[attr-defined]
        handlers["BRPOP"] = guarded


class GuardedConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, with poison messages quarantined instead of stopping the worker."""

    class Blueprint(Consumer.Blueprint):  # type: ignore[misc]
        default_steps = [*Consumer.Blueprint.default_steps, f"{__name__}:UnreadableGuard"]

    def __init__(self, on_task_request: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(on_task_request, *args, **kwargs)
        controller = self.controller
        if controller is None:
            return
        hand_off = controller._process_task
        guarded = self._guard_hand_off(hand_off)
        # Every path to the pool ends here: the consumer's handler, the ETA timer, and the
        # semaphore's `_process_task_sem`, which looks the method up on each call.
        controller._process_task = guarded
        if on_task_request == hand_off:
            self.on_task_request = guarded

    def _guard_hand_off(self, hand_off: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def guarded(request: Any) -> Any:
            try:
                return hand_off(request)
            except self.connection_errors:
                raise
            except Exception as exc:  # RecursionError or PicklingError while pickling, ...
                self._release(request)
                quarantine(
                    request.name,
                    request.id,
                    _queue_of(request.name, request.delivery_info, self),
                    _why("the worker could not hand it to its pool", exc),
                )
                request.send_event("task-failed", exception=f"poison: {type(exc).__name__}")
                request.acknowledge()
                return None

        return guarded

    def _release(self, request: Any) -> None:
        """Give back what the hand-off took: the pool slot and the reserved entry."""
        controller = self.controller
        if controller.semaphore is not None and controller.process_task == (
            controller._process_task_sem
        ):
            controller._quick_release()
        worker_state.task_ready(request, successful=False)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except self.connection_errors:
                raise
            except Exception as exc:  # a body of the wrong shape fails to unpack, ...
                self._poison_message(message, _why("the worker cannot read it", exc))
                return None

        return on_task_received

    def _poison_message(self, message: Any, why: str) -> None:
        headers = _headers(message)
        task_id = str(headers["id"]) if headers.get("id") else None
        task_name = str(headers["task"]) if headers.get("task") else None
        queue = _queue_of(task_name, getattr(message, "delivery_info", None), self)
        quarantine(task_name, task_id, queue, why)
        if not message.acknowledged:
            message.ack_log_error(log, self.connection_errors)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        # Celery's own logs the whole body; the task would stay pending and come back.
        self._poison_message(message, _why("the worker cannot decode it", exc))

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        # A content type we do not accept (a pickle), or a malformed request.
        self._poison_message(message, _why("the worker refuses its content", exc))

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._poison_message(message, "the worker cannot read it: not a task message")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        # A task this worker does not run (another queue's, or a newer release's): dropped
        # as Celery does, its row left to the reconciler, logged without the body.
        headers = _headers(message)
        log.error(
            "message for a task this worker does not run; dropped",
            extra={"task_id": headers.get("id"), "task_name": str(headers.get("task"))[:128]},
        )
        message.reject_log_error(log, self.connection_errors)
