"""With a real es-worker: an open breaker stops the hammering of a failing Elasticsearch.

Retries here are fast (at most 0.5 s apart), so without the breaker 40 tasks retrying through
a 12 s outage would send ES well over a thousand requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.core.observability.exporter import shared_state_collector
from tests.support.catalog import Bench, catalog_bench, new_customer
from tests.support.flow import all_finished
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow
OUTAGE_S = 12
TASKS = 40


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    env = {
        "BREAKER_FAILURE_THRESHOLD": "3",
        "BREAKER_OPEN_S": "2",
        "BREAKER_OPEN_MAX_S": "4",
        "ELASTICSEARCH_REQUEST_TIMEOUT_S": "1",
    }
    # /health/celery shows a view at most this old (plus the second a refresh takes).
    api = {"health_celery_refresh_s": 0.2}
    log_dir = tmp_path_factory.mktemp("breaker")
    with catalog_bench(log_dir, worker_env=env, api_settings=api) as started:
        yield started


def _breaker_state(bench: Bench) -> str:
    answer = bench.api.get("/health/celery")
    state: str = answer.json()["breakers"]["elasticsearch"]["state"]
    return state


def _metric(bench: Bench) -> float | None:
    # What the scheduler's shared-state exporter serves (the API does not: it is shared state).
    registry = CollectorRegistry()
    registry.register(shared_state_collector(bench.settings))
    text = generate_latest(registry).decode()
    found = re.search(r'^durable_breaker_state\{downstream="elasticsearch"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def test_an_open_breaker_parks_tasks_until_a_probe_succeeds(bench: Bench) -> None:
    assert bench.es_standin is not None
    customer = new_customer()
    bench.es_standin.fault("error", OUTAGE_S, status=503)
    before = bench.es_standin.stats()["requests"]
    task_ids = []
    for n in range(TASKS):
        answer = bench.api.put(
            f"/api/v1/services/s{n}", json={"customer_id": customer, "data": {"name": f"s{n}"}}
        )
        assert answer.status_code == 202, answer.text
        task_ids.append(answer.json()["task_id"])

    wait_until(lambda: _breaker_state(bench) == "open", 10, what="the breaker to open")
    assert _metric(bench) == 2
    standin = bench.es_standin
    wait_until(lambda: standin.current_fault() is None, OUTAGE_S + 5, what="the outage")
    during = bench.es_standin.stats()["requests"] - before

    rows = wait_until(lambda: all_finished(bench.repo, task_ids), 60, what="every task to finish")
    assert {r.status for r in rows} == {"success"}
    # Three failures opened it; then about one probe per open period (2 s, then 4 s), plus
    # the attempts already running when it opened. Far below one request per retry.
    assert during <= 40, during
    # Parked deliveries spent no retries: most tasks never failed at all.
    assert sum(r.retry_count for r in rows) <= 20, [r.retry_count for r in rows]
    assert _metric(bench) == 0  # read from Redis at each scrape
    wait_until(lambda: _breaker_state(bench) == "closed", 10, what="the view to show it closed")
    stored = bench.items("services", customer)
    assert sorted(stored) == sorted(f"s{n}" for n in range(TASKS))
