"""FastAPI dependencies, one place: settings, task log, enqueuer, broker clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis import Redis
from sqlalchemy import Engine

from services.core.auth import AuthError, Principal, TokenVerifier
from services.core.chatbot.client import ChatbotClient
from services.core.config import Settings
from services.core.enqueue import Enqueuer
from services.core.guards.breaker import Breaker
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


def get_runtime(request: Request) -> Runtime:
    """The process runtime stored on the app at start."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


_bearer = HTTPBearer(auto_error=False, description="JWT: sub, customer_id, roles")


def authenticate(
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
    try:
        return runtime.verifier.verify(credentials.credentials)
    except AuthError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            str(exc),
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from exc


PrincipalDep = Annotated[Principal, Depends(authenticate)]
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
