"""The FastAPI application: `uvicorn --factory services.api.main:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.api.deps import Runtime
from services.api.limits import BodyLimit
from services.api.routes import canary, catalog, documents, faqs, files, health, metrics, tasks
from services.core import logs
from services.core.auth import TokenVerifier
from services.core.celery_app import make_celery_app
from services.core.chatbot.client import ChatbotClient
from services.core.config import Settings, get_settings
from services.core.db import get_engine, session_factory
from services.core.enqueue import Enqueuer
from services.core.guards.gate import breakers
from services.core.health import CeleryView, redis_client
from services.core.storage import make_storage
from services.core.storage.records import StoredFiles
from services.core.tasklog.repository import TaskLogRepository


def build_runtime(settings: Settings) -> Runtime:
    """Everything the routes share, built from `settings`."""
    repo = TaskLogRepository(session_factory(settings.database_url))
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
        celery_view=CeleryView(celery, redis, settings, guards),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app for `settings` (default: from the environment)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.runtime.redis.close()
        app.state.runtime.chatbot.close()

    app = FastAPI(title="Durable writes API", version="0.1.0", lifespan=lifespan)
    app.state.runtime = build_runtime(settings)
    app.add_middleware(
        BodyLimit,
        max_body_bytes=settings.api_max_body_bytes,
        max_upload_bytes=settings.upload_max_request_bytes,
    )
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(tasks.router)
    app.include_router(canary.router)
    app.include_router(documents.router)
    app.include_router(faqs.router)
    app.include_router(files.router)
    app.include_router(catalog.router)
    return app


def main() -> None:
    """Run the API with uvicorn on the configured address."""
    import uvicorn

    settings = get_settings()
    logs.configure("api", level=settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        # Let in-flight requests finish on SIGTERM.
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
