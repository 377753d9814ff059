"""The task status API: status, my tasks, manual retry; failed tasks and redrive for operators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import PrincipalDep, Runtime, RuntimeDep, authorize
from services.api.routing import ThreadedRoute
from services.api.schemas import Moment, QueuedResponse, Text, errors
from services.api.validation import unprocessable
from services.core.auth import Principal
from services.core.operations.redrive import (
    AlreadyRetried,
    LaterWrite,
    NotFailed,
    redrive,
    retry_failed,
)
from services.core.retry import GiveUpReason
from services.core.secrecy import Sealer
from services.core.tasklog.models import TaskLog, TaskStatus
from services.core.tasklog.queries import BadCursor, TaskFilter, TaskQueries
from services.core.tasklog.views import redacted

router = APIRouter(
    prefix="/api/v1/tasks",
    tags=["tasks"],
    route_class=ThreadedRoute,
    responses=errors(401, 403, 404, 409, 413, 503),
)

Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=200)]
# Task ids are at most 64 characters in the log (uuids in practice).
TaskId = Annotated[Text, Path(min_length=1, max_length=64)]
NameFilter = Annotated[Text | None, Query(max_length=128)]
After = Annotated[Moment | None, Query(description="with a time zone, e.g. 2026-01-01T00:00:00Z")]
Before = After


class Progress(BaseModel):
    done: int | None
    total: int | None


class Waiting(BaseModel):
    """Why a task waits without a broker message, and until when at the latest.

    `reason`: `breaker:<downstream>` (released once the breaker's probe succeeded), `backoff`,
    `rate_limit`, `order` (an earlier write of the same entity, `waiting_for`, is still
    unfinished; released when it finishes), or `fair_share` (its customer's earlier writes fill
    its share of the queue; released in turn as they finish).
    """

    reason: str | None
    waiting_for: str | None
    release_at: datetime | None


class TaskStatusAnswer(BaseModel):
    """Where a task stands, with secrets redacted."""

    task_id: str
    task_name: str
    queue: str
    status: str
    customer_id: str | None
    user_id: str | None
    attempts: int
    retry_count: int
    error_kind: str | None
    error_message: str | None
    failure_reason: str | None
    result: Any
    payload: Any
    progress: Progress | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    next_attempt_at: datetime | None
    deadline_at: datetime
    retry_of: str | None
    retried_as: str | None = None
    # Acceptance order: the version domain of the write (kept by a manual retry of a catalog
    # write; a retried ChatbotMobile write is a new write and gets a new one).
    seq: int
    # Set while the task waits in the task log (no broker message).
    waiting: Waiting | None = None


class TaskPage(BaseModel):
    """One page of tasks, newest first."""

    items: list[TaskStatusAnswer]
    next_cursor: str | None


def answer_for(row: TaskLog, retried_as: str | None = None) -> TaskStatusAnswer:
    """The status answer of a row."""
    shown = redacted(row)
    progress = None
    if row.progress_total is not None:
        progress = Progress(done=row.progress_done, total=row.progress_total)
    return TaskStatusAnswer(
        task_id=row.task_id,
        task_name=row.task_name,
        queue=row.queue,
        status=row.status,
        customer_id=row.customer_id,
        user_id=row.user_id,
        attempts=row.attempts,
        retry_count=row.retry_count,
        error_kind=row.error_kind,
        error_message=row.error_message,
        failure_reason=row.failure_reason,
        result=shown["result"],
        payload=shown["payload"],
        progress=progress,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        next_attempt_at=row.next_attempt_at if row.status == TaskStatus.RETRYING else None,
        deadline_at=row.deadline_at,
        retry_of=row.retry_of,
        retried_as=retried_as,
        seq=row.seq,
        waiting=(
            Waiting(
                reason=row.wait_reason,
                waiting_for=row.waiting_for,
                release_at=row.next_attempt_at,
            )
            if row.held
            else None
        ),
    )


def _visible(runtime: Runtime, principal: Principal, task_id: str) -> TaskLog:
    row = runtime.repo.get_by_task_id(task_id)
    # 404 rather than 403 for others' tasks, so task ids cannot be probed.
    if row is None or not principal.may_see_task(row.user_id, row.customer_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id} visible to you")
    return row


def _operator(principal: Principal, customer_id: str | None) -> str | None:
    """The customer an operator call is confined to (admins: their own)."""
    if principal.is_service:
        return customer_id
    if not principal.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admins and services only")
    if customer_id is not None:
        authorize(principal, customer_id)
    return principal.customer_id


def _page(runtime: Runtime, f: TaskFilter, limit: int, cursor: str | None) -> TaskPage:
    try:
        rows, next_cursor = TaskQueries(runtime.repo.sessions).page(f, limit=limit, cursor=cursor)
    except BadCursor as exc:
        raise unprocessable(("query", "cursor"), str(exc)) from exc
    return TaskPage(items=[answer_for(r) for r in rows], next_cursor=next_cursor)


@router.get("/my-tasks")
def my_tasks(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    status_filter: Annotated[TaskStatus | None, Query(alias="status")] = None,
    task_name: NameFilter = None,
    created_after: After = None,
    created_before: Before = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TaskPage:
    """The caller's tasks, newest first; filters combine."""
    f = TaskFilter(
        user_id=principal.user_id,
        customer_id=principal.customer_id,
        status=status_filter,
        task_name=task_name,
        created_after=created_after,
        created_before=created_before,
    )
    return _page(runtime, f, limit, cursor)


@router.get("/failed")
def failed_tasks(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    customer_id: NameFilter = None,
    task_name: NameFilter = None,
    error_kind: Literal["transient", "permanent"] | None = None,
    failure_reason: GiveUpReason | None = None,
    created_after: After = None,
    created_before: Before = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> TaskPage:
    """Failed tasks (admins: of their customer; services: any), newest first."""
    f = TaskFilter(
        customer_id=_operator(principal, customer_id),
        status=TaskStatus.FAILED,
        task_name=task_name,
        error_kind=error_kind,
        failure_reason=failure_reason,
        created_after=created_after,
        created_before=created_before,
    )
    return _page(runtime, f, limit, cursor)


class RedriveBody(BaseModel):
    """Which failed tasks to retry; dry_run only counts them."""

    model_config = ConfigDict(extra="forbid")
    customer_id: Text | None = Field(default=None, max_length=128)
    task_name: Text | None = Field(default=None, max_length=128)
    error_kind: Literal["transient", "permanent"] | None = None
    failure_reason: GiveUpReason | None = None
    created_after: Moment | None = None
    created_before: Moment | None = None
    dry_run: bool = True
    max: int = Field(default=100, ge=1)


class RedriveAnswer(BaseModel):
    dry_run: bool
    matched: int
    retried: list[dict[str, str]]
    # Failed tasks left alone: a later write of the same entity would be undone (`reason`);
    # present only when there are any.
    refused: list[dict[str, str]] | None = None


@router.post("/retry-failed", response_model_exclude_none=True)
def retry_failed_tasks(
    body: RedriveBody, runtime: RuntimeDep, principal: PrincipalDep
) -> RedriveAnswer:
    """Retry failed tasks matching the filters, at most `max` per call (dry run by default)."""
    limit = runtime.settings.redrive_max_per_call
    if body.max > limit:
        raise unprocessable(("body", "max"), f"at most {limit} per call (REDRIVE_MAX_PER_CALL)")
    f = TaskFilter(
        customer_id=_operator(principal, body.customer_id),
        task_name=body.task_name,
        error_kind=body.error_kind,
        failure_reason=body.failure_reason,
        created_after=body.created_after,
        created_before=body.created_before,
    )
    report = redrive(
        runtime.enqueuer,
        Sealer(runtime.settings.secrets_key.get_secret_value()),
        TaskQueries(runtime.repo.sessions),
        f,
        limit=body.max,
        dry_run=body.dry_run,
    )
    return RedriveAnswer(
        dry_run=report.dry_run,
        matched=report.matched,
        retried=report.retried,
        refused=report.refused or None,
    )


@router.get("/{task_id}/status")
def task_status(task_id: TaskId, runtime: RuntimeDep, principal: PrincipalDep) -> TaskStatusAnswer:
    """Where a task stands."""
    row = _visible(runtime, principal, task_id)
    retry = runtime.repo.get_retry_of(task_id)
    return answer_for(row, retried_as=retry.task_id if retry else None)


class RetryAnswer(QueuedResponse):
    retry_of: str


@router.post("/{task_id}/retry", status_code=status.HTTP_202_ACCEPTED)
def retry_task(task_id: TaskId, runtime: RuntimeDep, principal: PrincipalDep) -> RetryAnswer:
    """Queue a failed task again as a new task linked to it; 409 if it is not failed, was
    retried already, or a later write of the same entity would be undone."""
    row = _visible(runtime, principal, task_id)
    sealer = Sealer(runtime.settings.secrets_key.get_secret_value())
    try:
        accepted = retry_failed(runtime.enqueuer, sealer, row)
    except (NotFailed, AlreadyRetried, LaterWrite) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return RetryAnswer(**QueuedResponse.for_task(accepted).model_dump(), retry_of=task_id)
