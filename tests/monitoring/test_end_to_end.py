"""The stack watched by a real Prometheus and Alertmanager: alerts arrive, dashboards show.

One run: writes of every path through the API (a catalog write that Elasticsearch refuses
for good among them), then the dead-letter alert must reach the test's webhook with the
task name in its labels, every panel query of every dashboard must parse in that
Prometheus and return data where the run exercised it, and no series may carry a customer
(but fair share's per-customer figures, a bounded set), user or task id.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.config import Settings
from services.core.db import session_factory
from services.core.taskdefs import CANARY, Queue
from services.core.tasklog import migrate
from services.core.tasklog.models import utcnow
from services.core.tasklog.repository import TaskLogRepository
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.flow import all_finished
from tests.support.monitoring import concrete, panel_queries
from tests.support.observed import Observed, observed_stack
from tests.support.procs import wait_until
from tests.support.server import token

pytestmark = pytest.mark.slow

CUSTOMER = f"cust-{uuid.uuid4().hex[:10]}"
USER = f"user-{uuid.uuid4().hex[:10]}"
# Panels this run cannot be sure to move off 0; every other panel must show the run.
NOT_EXERCISED = {
    # ChatbotMobile and the embeddings API never fail here: breakers stay closed.
    *(
        (f"{downstream}.json", title)
        for downstream in ("chatbotmobile", "embeddings")
        for title in (
            "Breaker",
            "Breaker state",
            "Deliveries parked by the breaker",
            "Failing share",
            "Recent transient failures",
        )
    ),
    # Elasticsearch's run of failures lives a fraction of a second before the breaker opens
    # and resets it: a scrape may or may not fall inside.
    ("elasticsearch.json", "Recent transient failures"),
    # No task comes near its deadline.
    ("overview.json", "Tasks within 10 % of their deadline"),
    # celery-exporter counts active tasks from worker heartbeats (every 2 s) and is scraped
    # every 5 s: a task of a few seconds may fall between.
    ("workers.json", "Tasks active"),
}
FORBIDDEN_LABELS = {"customer_id", "customer", "user_id", "user", "task_id", "url", "path"}
PER_CUSTOMER = {"durable_customer_outstanding_tasks", "durable_customer_waiting_tasks"}


@pytest.fixture
def database() -> Iterator[str]:
    """A task log of this test only, so the exporter's figures are this run's."""
    name = f"durable_obs_{uuid.uuid4().hex[:10]}"
    url = create_pg_database(name)
    migrate.upgrade(url)
    yield url
    from services.core import db

    for (_, engine_url), engine in list(db._engines.items()):
        if engine_url == url:
            engine.dispose()
    drop_pg_database(name)


def _accepted(answer: httpx.Response) -> str:
    assert answer.status_code == 202, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def _drive(stack: Observed, api: httpx.Client, repo: TaskLogRepository) -> list[str]:
    """Writes through every path; the ids of the tasks that must succeed."""
    ids = [_accepted(api.post("/api/v1/canary", json={"queue": q})) for q in ("es", "http")]
    for n in range(4):
        body = {"customer_id": CUSTOMER, "data": {"name": f"lamp {n}"}, "with_embedding": True}
        ids.append(_accepted(api.put(f"/api/v1/products/p-{n}", json=body)))
    ids.append(_accepted(api.delete("/api/v1/products/p-0", params={"customer_id": CUSTOMER})))
    items = [{"id": f"a-{n}", "data": {"name": f"cable {n}"}} for n in range(2)]
    bulk = {"customer_id": CUSTOMER, "items": items}
    ids.append(_accepted(api.post("/api/v1/accessories/bulk-upsert", json=bulk)))
    # ChatbotMobile answers slowly for a while: tasks are seen running for seconds.
    stack.chatbot.fault("slow", 3, delay_s=2.5)
    text = {"customer_id": CUSTOMER, "text": "Opening hours: 9 to 5", "source": "manual"}
    ids.append(_accepted(api.post("/api/v1/documents/upload-text", json=text)))
    faq = {"customer_id": CUSTOMER, "question": "Open on Sunday?", "answer": "No."}
    ids.append(_accepted(api.post("/api/v1/mobile-faq", data=faq)))
    # Elasticsearch answers 503 for a while: retries, then its breaker opens and parks.
    stack.es.fault("error", 4, status=503)
    for n in range(3):
        body = {"customer_id": CUSTOMER, "data": {"name": f"desk {n}"}}
        ids.append(_accepted(api.put(f"/api/v1/services/s-{n}", json=body)))

    def breaker_open() -> bool:
        state: str = api.get("/health/celery").json()["breakers"]["elasticsearch"]["state"]
        return state != "closed"

    wait_until(breaker_open, 15, what="the elasticsearch breaker to open")
    for n in range(3, 5):
        body = {"customer_id": CUSTOMER, "data": {"name": f"desk {n}"}}
        ids.append(_accepted(api.put(f"/api/v1/services/s-{n}", json=body)))
    # A task accepted but never published (as if Redis had failed): the reconciler's work.
    lost = str(uuid.uuid4())
    repo.create(
        task_id=lost,
        task_name=CANARY[Queue.ES].name,
        queue=Queue.ES.value,
        payload={},
        deadline_at=utcnow() + timedelta(hours=1),
        now=utcnow() - timedelta(seconds=30),
    )
    return [*ids, lost]


def _points(data: dict[str, Any]) -> list[float]:
    """The numbers a range query answered (NaN, what a panel cannot draw, left out)."""
    assert data["resultType"] == "matrix", data["resultType"]
    values = [float(v) for series in data["result"] for _, v in series["values"]]
    return [v for v in values if not math.isnan(v)]


def test_alerts_reach_the_webhook_and_dashboards_show_the_run(
    tmp_path: Path, settings: Settings, database: str
) -> None:
    started = time.monotonic()
    prefix = f"{settings.redis_key_prefix}obs{uuid.uuid4().hex[:4]}:"
    repo = TaskLogRepository(session_factory(database))
    bearer = token(settings, "admin", user_id=USER, customer_id=CUSTOMER)
    with (
        observed_stack(tmp_path, database, prefix) as stack,
        httpx.Client(
            base_url=stack.api,
            headers={"Authorization": f"Bearer {bearer}"},
            timeout=15,
            trust_env=False,
        ) as api,
    ):

        def all_up() -> bool:
            result = stack.query("up")["result"]
            return {r["metric"]["job"]: r["value"][1] for r in result} == {
                job: "1" for job in stack.targets
            }

        wait_until(all_up, 30, interval_s=0.5, what="every target scraped")
        since = time.time()
        ids = _drive(stack, api, repo)
        body = {"customer_id": CUSTOMER, "data": {"name": "bad", "price": "not-a-number"}}
        bad = _accepted(api.put("/api/v1/products/bad-1", json=body))
        failed_at = time.monotonic()

        rows = wait_until(lambda: all_finished(repo, [*ids, bad]), 60, what="every task")
        outcome = {r.task_id: (r.status, r.failure_reason) for r in rows}
        assert outcome.pop(bad) == ("failed", "permanent_error")
        assert set(outcome.values()) == {("success", None)}, outcome

        alerts = wait_until(
            lambda: stack.webhook.firing("DurableTaskDeadLettered"),
            60,
            interval_s=0.2,
            what="the dead-letter alert at the webhook",
        )
        received_at, path, alert = alerts[0]
        latency = received_at - failed_at
        assert path == "/durable-writes/critical"
        assert alert["labels"]["task"] == "es_upsert_product"
        assert (alert["labels"]["queue"], alert["labels"]["reason"]) == ("es", "permanent_error")
        assert alert["annotations"]["runbook_url"] == "docs/runbook.md#durabletaskdeadlettered"
        others = {
            a["labels"]["alertname"] for _, _, b in stack.webhook.received for a in b["alerts"]
        }
        assert others == {"DurableTaskDeadLettered"}

        # Every panel query parses here, over the run as a dashboard would draw it; those
        # of the paths taken show the run (a value other than 0).
        queries = panel_queries()
        points = {(b, t, e): _points(stack.query(concrete(e), since)) for b, t, e in queries}
        with_data = [q for q, p in points.items() if p]
        showing = {(b, t) for (b, t, _), p in points.items() if any(v != 0 for v in p)}
        panels = {(b, t) for b, t, _ in queries}
        assert panels - showing <= NOT_EXERCISED, sorted(panels - showing - NOT_EXERCISED)
        assert len(with_data) == len(queries)

        series = httpx.get(
            f"{stack.prometheus.url}/api/v1/series",
            params={"match[]": '{__name__=~".+"}'},
            timeout=30,
            trust_env=False,
        ).json()["data"]
        secret = {CUSTOMER, USER, *ids, bad}
        named: dict[str, set[str]] = {}
        for labels in series:
            if labels["__name__"] in PER_CUSTOMER:
                # Fair share's figures name customers, a bounded set: the top ones and
                # (other) per queue (README, Observability).
                named.setdefault(labels["queue"], set()).add(labels.pop("customer"))
            assert not FORBIDDEN_LABELS & set(labels), labels
            assert not secret & set(labels.values()), labels
            assert not any("://" in v for v in labels.values()), labels
        assert named["es"] == {CUSTOMER, "(other)"}, named
    print(
        f"\nobservability e2e: dead-letter alert {latency:.1f} s after the failing write; "
        f"{len(queries)} panel queries parse, {len(with_data)} returned data, "
        f"{len(showing)} of {len(panels)} panels show the run (non-zero); "
        f"{len(series)} series checked; wall time {time.monotonic() - started:.0f} s"
    )
