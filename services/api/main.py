"""The FastAPI application: `uvicorn --factory services.api.main:create_app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from services.api import openapi
from services.api.deps import Runtime
from services.api.instrumentation import RequestMetrics
from services.api.limits import BodyLimit
from services.api.routes import canary, catalog, documents, faqs, files, health, metrics, tasks
from services.api.shutdown import AnswerWhenDropped
from services.api.validation import is_data_error, unstorable_answer, validation_refused
from services.core import logs, processes
from services.core.auth import TokenVerifier
from services.core.chatbot.client import ChatbotClient
from services.core.config import Settings, get_settings
from services.core.db import get_engine, session_factory
from services.core.enqueue import Enqueuer
from services.core.guards.gate import breakers
from services.core.health import CeleryView, redis_client
from services.core.observability import multiproc_dir
from services.core.observability.series import preinit_api
from services.core.perprocess import freeze_startup_heap
from services.core.storage import make_storage
from services.core.storage.records import StoredFiles
from services.core.taskdefs import Queue, all_specs
from services.core.tasklog.fairshare import FairShareLog
from services.core.tasklog.repository import TaskLogRepository

log = logging.getLogger("services.api")


def build_runtime(settings: Settings) -> Runtime:
    """Everything the routes share, built from `settings`."""
    repo = TaskLogRepository(session_factory(settings.database_url))
    # Imported here: the module also builds the workers' global app, which the API never uses.
    from services.core.celery_app import make_celery_app

    celery = make_celery_app(settings)
    redis = redis_client(settings)
    guards = breakers(redis, settings) if settings.breaker_enabled else {}
    return Runtime(
        settings=settings,
        engine=get_engine(settings.database_url),
        repo=repo,
        celery=celery,
        redis=redis,
        enqueuer=Enqueuer(repo=repo, celery=celery, settings=settings),
        storage=make_storage(settings),
        stored_files=StoredFiles(session_factory(settings.database_url)),
        chatbot=ChatbotClient(settings),
        verifier=TokenVerifier(settings),
        breakers=guards,
        celery_view=CeleryView(celery, redis, settings, guards, FairShareLog(repo.sessions)),
    )


async def _task_log_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    if is_data_error(exc):
        # The database refused a value of the request (what the edge checks missed): a
        # retry cannot help, so it is the caller's 422, never "try again".
        log.warning("task log refused a value", extra={"error": type(exc).__name__})
        return unstorable_answer()
    # Nothing was accepted (a write is accepted once its row is committed): say so, and that
    # a retry will do, instead of a 500. The error's text names hosts: logged, not shown.
    log.error("task log unavailable", extra={"error": type(exc).__name__})
    return JSONResponse(
        {"detail": "the task log is unavailable; nothing was accepted, try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    settings.require("DATABASE_URL", "SECRETS_KEY", "AUTH_JWT_SECRET")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        freeze_startup_heap()
        yield
        app.state.runtime.redis.close()
        app.state.runtime.celery_view.close()
        app.state.runtime.chatbot.close()

    app = FastAPI(title="Durable writes API", version="0.1.0", lifespan=lifespan)
    app.state.runtime = build_runtime(settings)
    # Innermost: its 503 goes out through the body limit and the request metrics.
    app.add_middleware(AnswerWhenDropped)
    app.add_middleware(
        BodyLimit,
        max_body_bytes=settings.api_max_body_bytes,
        max_upload_bytes=settings.upload_max_request_bytes,
        # Looked up when first needed: `openapi.install` below replaces the method.
        openapi=lambda: app.openapi(),
    )
    # Added last, so outermost: refused bodies (413) are counted too.
    app.add_middleware(RequestMetrics)
    preinit_api(s for s in all_specs() if s.queue is not Queue.MAINTENANCE)
    app.add_exception_handler(SQLAlchemyError, _task_log_unavailable)
    app.add_exception_handler(RequestValidationError, validation_refused)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(tasks.router)
    app.include_router(canary.router)
    app.include_router(documents.router)
    app.include_router(faqs.router)
    app.include_router(files.router)
    app.include_router(catalog.router)
    openapi.install(app, settings)
    return app


def main() -> None:
    """Run the API with uvicorn on the configured address."""
    import uvicorn

    settings = get_settings()
    logs.configure("api", level=settings.log_level, json_lines=settings.log_json)
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_config": None,
        # One line per request costs a large share of a short request's time; request counts
        # and latencies by route are in /metrics, errors are logged.
        "access_log": settings.api_access_log,
        # Let in-flight requests finish on SIGTERM (the process table's shutdown timeout).
        "timeout_graceful_shutdown": int(processes.API.shutdown_timeout_s),
    }
    if settings.api_workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Several worker processes: each counts in the shared multiprocess directory, made ready
    # here before they start, and any of them answers /metrics for all.
    multiproc_dir.claim()
    uvicorn.run(
        "services.api.main:serving_app", factory=True, workers=settings.api_workers, **options
    )


def serving_app() -> FastAPI:
    """The app of one of several uvicorn worker processes (each configures its own logs)."""
    settings = get_settings()
    logs.configure("api", level=settings.log_level, json_lines=settings.log_json)
    return create_app(settings)


if __name__ == "__main__":
    main()
