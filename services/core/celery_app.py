"""The one Celery app definition shared by the API, the workers, the scheduler and Flower."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from celery.signals import setup_logging, worker_init
from kombu.entity import Exchange
from kombu.entity import Queue as KombuQueue

from services.core import logs, redisconn
from services.core.config import Settings, get_settings
from services.core.observability import publish  # noqa: F401  (publish latency, every process)
from services.core.perprocess import freeze_startup_heap
from services.core.taskdefs import Queue, UnknownTaskError, spec_for
from services.core.worker_boot import BoundedShutdown, Heartbeat, ReadsItsSecrets


def route_task(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> dict[str, str]:
    """Celery router: the queue of a task comes from its declared spec."""
    try:
        return {"queue": spec_for(name).queue.value}
    except UnknownTaskError:
        return {}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours."""
    transport_options: dict[str, Any] = {
        "visibility_timeout": settings.broker_visibility_timeout_s,
        "socket_connect_timeout": settings.broker_connect_timeout_s,
        "socket_timeout": settings.broker_socket_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": 10,
        # Sweep for messages of dead workers every interval (kombu's default scans only on
        # every 10th sweep, which stretches recovery to ~100 s).
        "unacked_restore_interval": settings.broker_restore_interval_s,
        "unacked_restore_throttle": 1,
    }
    if settings.redis_key_prefix:
        transport_options["global_keyprefix"] = settings.redis_key_prefix
    if settings.redis_sentinel_master:
        # REDIS_URL lists the sentinels; kombu asks them for this master (and again after a
        # failover, on reconnecting).
        transport_options["master_name"] = settings.redis_sentinel_master
    exchange = Exchange("tasks", type="direct")
    tls = redisconn.tls_options(settings.redis_url)
    return {
        "broker_url": settings.redis_url,
        # rediss://: the certificate checks its query asks for (kombu alone would skip them).
        **({"broker_use_ssl": tls} if tls else {}),
        "broker_transport_options": transport_options,
        "broker_connection_timeout": settings.broker_connect_timeout_s,
        "broker_connection_retry_on_startup": True,
        # Connections to publish on: one per thread that may publish at once (the API's
        # request threads), so a publish does not queue for a connection.
        "broker_pool_limit": settings.broker_pool_limit,
        "broker_channel_error_retry": True,
        # A publish from the API gives up after a bounded number of tries: the task log row
        # already exists, so the caller still gets its task id (the reconciler republishes).
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": settings.publish_max_retries,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Results live in the task log, not in a Celery result backend.
        "task_ignore_result": True,
        "result_expires": 7 * 24 * 3600,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "task_queues": [KombuQueue(q.value, exchange, routing_key=q.value) for q in Queue],
        "task_default_queue": Queue.MAINTENANCE.value,
        "task_default_exchange": exchange.name,
        "task_default_routing_key": Queue.MAINTENANCE.value,
        "task_create_missing_queues": False,
        "task_routes": (route_task,),
        # Reliability: the message is acknowledged only after the attempt ends, and a pool
        # process killed mid-task puts its message back at once.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Failed and timed-out tasks are acked (Celery's default, kept on purpose): a failed
        # message would otherwise loop forever. The task log records every failure, so the
        # broker is not the record of what failed.
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # A message the worker cannot decode or hand to its pool fails its task as `poison`
        # instead of stopping the worker (named, not imported: it belongs to the tracked-task
        # layer above this module, and only a worker instantiates it).
        "worker_consumer": "services.core.tracking.poison:GuardedConsumer",
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        # An acks-late task running when the broker connection drops will be redelivered
        # anyway; cancelling it avoids two copies running at once.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # With REMAP_SIGTERM=SIGQUIT (worker_boot.BoundedShutdown insists on it), SIGTERM is
        # the cold shutdown: while any task runs, the worker waits this whole period, then
        # cancels what still runs and restores every message it holds (delayed retries too).
        # Idle, it skips the wait: the held delayed messages are restored all the same
        # (tests/integration/test_shutdown_and_durability.py shows both).
        "worker_soft_shutdown_timeout": settings.worker_soft_shutdown_timeout_s,
        "worker_enable_soft_shutdown_on_idle": False,
        # Events feed Flower and celery-exporter. Workers send them; a publish does not (a
        # task-sent event is a second Redis publish per accepted write, about a third of the
        # API's publish time): Flower shows a task from the moment a worker receives it, and
        # the task log (status API, durable_* metrics) already knows it from acceptance on.
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "enable_utc": True,
        "timezone": "UTC",
    }


HIDDEN = "<hidden>"


class QuietAMQP(AMQP):  # type: ignore[misc]
    """Publishes task messages whose arguments' repr is hidden.

    Celery writes `argsrepr`/`kwargsrepr` (up to 1 KB each) into its "received" and trace
    log lines and into the events Flower shows; a task's payload is customer data. The task
    log keeps the payload, and shows it with secrets masked.
    """

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["argsrepr"] = HIDDEN
        kwargs["kwargsrepr"] = HIDDEN
        return super().as_task_v2(*args, **kwargs)


def make_celery_app(settings: Settings, *, current: bool = False) -> Celery:
    """A Celery app configured from `settings`."""
    app = Celery("durable_writes", set_as_current=current, amqp=QuietAMQP)
    app.config_from_object(celery_config(settings))
    app.steps["worker"].add(BoundedShutdown)
    app.steps["worker"].add(ReadsItsSecrets)
    app.steps["consumer"].add(Heartbeat)
    return app


@worker_init.connect  # type: ignore[untyped-decorator]
def _freeze_startup_heap(**_: Any) -> None:
    # The worker's main process, its start-up done, before the pool forks.
    freeze_startup_heap()


@setup_logging.connect  # type: ignore[untyped-decorator]
def _setup_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from installing its own handlers.
    settings = get_settings()
    logs.configure("worker", level=settings.log_level, json_lines=settings.log_json)


app = make_celery_app(get_settings(), current=True)
