"""`durable-tasks`: the operator's view of the task log, through the same code as the API.

durable-tasks failed [--customer C] [--task-name N] [--error-kind K] [--failure-reason R]
                     [--limit 50]
durable-tasks show TASK_ID
durable-tasks redrive [filters] [--dry-run/--no-dry-run] [--max 100]
durable-tasks counts
"""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from services.core.celery_app import app as celery_app
from services.core.config import get_settings
from services.core.db import session_factory
from services.core.enqueue import Enqueuer
from services.core.operations.redrive import redrive
from services.core.retry import GiveUpReason
from services.core.secrecy import Sealer
from services.core.tasklog.models import TaskLog, TaskStatus
from services.core.tasklog.queries import TaskFilter, TaskQueries
from services.core.tasklog.repository import TaskLogRepository
from services.core.tasklog.views import redacted


def _repo() -> TaskLogRepository:
    return TaskLogRepository(session_factory(get_settings().database_url))


def _line(row: TaskLog) -> str:
    error = (row.error_message or "").replace("\n", " ")[:80]
    return (
        f"{row.task_id}  {row.task_name:<28} {row.status:<10} {row.customer_id or '-':<16} "
        f"{row.created_at:%Y-%m-%d %H:%M:%S}  {row.failure_reason or ''} {error}"
    )


def _filters(f: Any) -> Any:
    for option in (
        click.option("--customer", "customer_id", help="customer id"),
        click.option("--task-name", help="e.g. es_upsert_product"),
        click.option("--error-kind", type=click.Choice(["transient", "permanent"])),
        click.option("--failure-reason", type=click.Choice([r.value for r in GiveUpReason])),
    ):
        f = option(f)
    return f


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            first = str(exc).splitlines()[0]
            raise click.ClickException(
                f"task log unreachable or not migrated (DATABASE_URL; make migrate): {first}"
            ) from exc


@click.group(cls=_Group)
def main() -> None:
    """Inspect and redrive tracked tasks."""


@main.command()
@_filters
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
def failed(
    customer_id: str | None,
    task_name: str | None,
    error_kind: str | None,
    failure_reason: str | None,
    limit: int,
) -> None:
    """List failed tasks, newest first."""
    f = TaskFilter(
        customer_id=customer_id,
        task_name=task_name,
        error_kind=error_kind,
        failure_reason=failure_reason,
        status=TaskStatus.FAILED,
    )
    rows, _ = TaskQueries(_repo().sessions).page(f, limit=limit)
    for row in rows:
        click.echo(_line(row))
    click.echo(f"{len(rows)} failed task(s) shown", err=True)


@main.command()
@click.argument("task_id")
def show(task_id: str) -> None:
    """Show one task as JSON (payload and result redacted)."""
    repo = _repo()
    row = repo.get_by_task_id(task_id)
    if row is None:
        raise click.ClickException(f"no task {task_id}")
    retry = repo.get_retry_of(task_id)
    fields = redacted(row)
    fields["retried_as"] = retry.task_id if retry else None
    click.echo(json.dumps(fields, indent=2, default=str))


@main.command(name="redrive")
@_filters
@click.option("--dry-run/--no-dry-run", default=True, show_default=True)
@click.option("--max", "limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
def redrive_command(
    customer_id: str | None,
    task_name: str | None,
    error_kind: str | None,
    failure_reason: str | None,
    dry_run: bool,
    limit: int,
) -> None:
    """Retry failed tasks matching the filters (counts only, unless --no-dry-run)."""
    settings = get_settings()
    repo = _repo()
    report = redrive(
        Enqueuer(repo=repo, celery=celery_app, settings=settings),
        Sealer(settings.secrets_key.get_secret_value()),
        TaskQueries(repo.sessions),
        TaskFilter(
            customer_id=customer_id,
            task_name=task_name,
            error_kind=error_kind,
            failure_reason=failure_reason,
        ),
        limit=limit,
        dry_run=dry_run,
    )
    for item in report.retried:
        click.echo(f"{item['task_id']} -> {item['retried_as']}")
    for item in report.refused:
        click.echo(f"{item['task_id']} not retried: {item['reason']}")
    verb = "would retry" if dry_run else "retried"
    done = report.matched if dry_run else len(report.retried)
    click.echo(f"matched={report.matched} {verb}={done}")


@main.command()
def counts() -> None:
    """Task counts by status and queue."""
    table = TaskQueries(_repo().sessions).counts_by_status_and_queue()
    for (task_status, queue), n in sorted(table.items()):
        click.echo(f"{task_status:<11} {queue:<12} {n}")


if __name__ == "__main__":
    main()
