"""An outage backlog waits in the task log, not in the workers or Redis, and drains in order.

The CI-sized form of the backlog benchmark (`tools/bench/backlog.py`, `make bench`): 2,000
Elasticsearch writes (and 1,000 ChatbotMobile FAQ writes) accepted while the downstream is
down for longer than the breaker's longest open period, then drained when it returns. It
checks what the design promises and prints the figures; speed and memory are the benchmark's
to measure, not this test's to assert.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.bench.backlog import TIMINGS, run_backlog

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.mark.parametrize(("kind", "n"), [("catalog", 2000), ("faq", 1000)])
def test_an_outage_backlog_waits_in_the_log_and_drains_in_acceptance_order(
    kind: str, n: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No pipeline phase: it only serves the drain ratio, which is the benchmark's to measure.
    report = run_backlog(tmp_path / kind, kind, n, log=lambda line: None, baseline=False)
    figures = report.as_dict()
    figures.pop("samples")
    with capsys.disabled():
        print(f"\nbacklog {kind}: {json.dumps(figures)}")
    # Every write of both phases landed, each entity's last accepted write is what it holds,
    # and no two deliveries of one write overlapped at the downstream.
    assert (report.succeeded, report.failed) == (n, 0)
    assert report.order_violations == 0
    assert report.overlapping_writes == 0
    # While the downstream was down the backlog waited in the log: all of it at once, with
    # next to nothing in Redis once the worker had taken what was published.
    assert report.held_peak >= n * 0.95
    depth = int(TIMINGS["RELEASE_QUEUE_DEPTH"])
    assert report.broker_messages_after_accepting <= 10
    assert max(report.samples.broker_messages[-5:]) <= depth
