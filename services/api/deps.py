"""FastAPI dependencies, one place: settings, task log, enqueuer, broker clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from sqlalchemy import Engine

from services.core.auth import AuthError, AuthUnavailable, Principal, TokenVerifier
from services.core.chatbot.client import ChatbotClient
from services.core.config import Settings
from services.core.enqueue import Enqueuer
from services.core.guards.breaker import Breaker
from services.core.health import CeleryView
from services.core.storage import Storage
from services.core.storage.records import StoredFiles
from services.core.taskdefs import Downstream
from services.core.tasklog.repository import TaskLogRepository


@dataclass
class Runtime:
    """Objects built once per API process and shared by requests."""

    settings: Settings
    engine: Engine
    repo: TaskLogRepository
    celery: Celery
    redis: Redis
    enqueuer: Enqueuer
    storage: Storage
    stored_files: StoredFiles
    chatbot: ChatbotClient
    verifier: TokenVerifier
    # The downstreams' circuit breakers (empty when BREAKER_ENABLED is false), read-only here.
    breakers: dict[Downstream, Breaker]
    # /health/celery's view, refreshed in the background when asked for.
    celery_view: CeleryView


# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` dependency in its
# thread pool, a hop (a thread handoff and back) that costs a short request a large share of
# its time; the endpoints, which wait on the task log and the broker, stay in threads.


async def get_runtime(request: Request) -> Runtime:
    """The process runtime stored on the app at start."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


_bearer = HTTPBearer(auto_error=False, description="JWT: sub, customer_id, roles")


async def authenticate(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from its bearer token; 401 with WWW-Authenticate otherwise."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await _verify(runtime, credentials.credentials)


async def _verify(runtime: Runtime, token: str) -> Principal:
    # A shared-secret check is a few microseconds of CPU: done here. One that may fetch the
    # identity provider's keys (JWKS) waits on the network: done in a thread.
    if runtime.verifier.may_block:
        return await run_in_threadpool(verify_bearer, runtime, token)
    return verify_bearer(runtime, token)


def verify_bearer(runtime: Runtime, token: str) -> Principal:
    """The caller of a bearer token; 401 if it is not valid, 503 if it cannot be checked."""
    try:
        return runtime.verifier.verify(token)
    except AuthError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            str(exc),
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from exc
    except AuthUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the token cannot be checked now: the identity provider is unreachable",
            headers={"Retry-After": "5"},
        ) from exc


async def maybe_authenticate(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """The caller if it sent a bearer token (401 if that token is not valid), else None."""
    return None if credentials is None else await _verify(runtime, credentials.credentials)


PrincipalDep = Annotated[Principal, Depends(authenticate)]
MaybePrincipalDep = Annotated[Principal | None, Depends(maybe_authenticate)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="repeat a write safely: the same key and body return the first task",
    ),
]


def authorize(principal: Principal, customer_id: str) -> None:
    """403 unless the caller may act for `customer_id`."""
    if not principal.may_act_for(customer_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this token may not act for customer {customer_id!r}",
        )
