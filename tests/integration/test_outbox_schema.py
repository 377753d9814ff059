"""The task log in a schema of its own (TASKLOG_SCHEMA) inside an application's database, end
to end: the application's connections keep their search path (its tables in `public`), our
statements through them name the schema, and the workers find the task log there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from services.core.config import get_settings
from services.core.search.catalog import PRODUCTS
from services.core.search.facade import CatalogService
from tests.support.catalog import Bench, catalog_bench, new_customer
from tests.support.databases import own_database
from tests.support.flow import enqueuer
from tests.support.outbox import Callers, callers

pytestmark = pytest.mark.slow
SCHEMA = "durable"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    # Every process of the deployment reads TASKLOG_SCHEMA: the migrations, the workers and,
    # here, this test process (its settings are read again while the module runs).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TASKLOG_SCHEMA", SCHEMA)
        get_settings.cache_clear()
        try:
            with (
                own_database("schema") as url,
                catalog_bench(
                    tmp_path_factory.mktemp("outbox-schema"),
                    database_url=url,
                    worker_env={"TASKLOG_SCHEMA": SCHEMA},
                    redis_key_prefix=f"{get_settings().redis_key_prefix}schema-{uuid.uuid4().hex[:6]}:",
                ) as started,
            ):
                yield started
        finally:
            patch.undo()
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def db(bench: Bench) -> Iterator[Callers]:
    with callers(bench.settings.database_url) as made:
        yield made


@pytest.fixture(scope="module")
def service(bench: Bench) -> CatalogService:
    assert bench.settings.tasklog_schema == SCHEMA
    return CatalogService(bench.settings, enqueuer(bench.settings))


def upsert(service: CatalogService, customer: str, item: str, name: str, version: int) -> Any:
    data = {"id": item, "name": name}
    return lambda session: service.upsert(
        PRODUCTS, customer, data, False, None, True, version, None, session=session
    )


def test_the_task_log_lives_in_its_schema_beside_the_applications_tables(db: Callers) -> None:
    with db.sync.connect() as connection:
        where = connection.execute(
            text("SELECT to_regclass('task_log'), to_regclass(:q), to_regclass('caller_products')"),
            {"q": f"{SCHEMA}.task_log"},
        ).one()
    assert where == (None, f"{SCHEMA}.task_log", "caller_products")


@pytest.mark.parametrize("kind", ["session", "async_connection"])
def test_a_write_in_the_applications_transaction_lands_and_a_rollback_leaves_nothing(
    bench: Bench, db: Callers, service: CatalogService, kind: str
) -> None:
    customer = new_customer()
    rolled = db.open(kind)
    gone = rolled.write(upsert(service, customer, "p1", "gone", 9))["task_id"]
    rolled.rollback()
    caller = db.open(kind)
    caller.set_name(f"{customer}-p1", "Desk lamp")
    # A caller version: its check writes to the schema's table too, in the transaction.
    task_id = caller.write(upsert(service, customer, "p1", "Desk lamp", 3))["task_id"]
    caller.commit()
    assert bench.succeeded(task_id)["result"] == "created"
    assert bench.doc("products", customer, "p1")["name"] == "Desk lamp"  # type: ignore[index]
    assert bench.repo.get_by_task_id(gone) is None
