"""The chaos suite's fault plan: every kind, inside the load window, the same for a seed."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tools.chaos.faults import KINDS, schedule

WORKERS = ["es-worker-1", "es-worker-2", "http-worker"]


@pytest.mark.parametrize("duration_s", [30, 60, 300, 900])
def test_every_kind_strikes_and_is_over_before_the_load_ends(duration_s: float) -> None:
    for seed in range(50):
        plan = schedule(random.Random(seed), duration_s, WORKERS)
        kinds = Counter(f.kind for f in plan)
        assert set(kinds) == set(KINDS)
        assert sum(kinds.values()) == len(KINDS) + max(0, int(duration_s // 60) - 1)
        assert [f.at_s for f in plan] == sorted(f.at_s for f in plan)
        for fault in plan:
            assert fault.at_s >= 0.1 * duration_s - 0.05
            assert fault.at_s + fault.duration_s <= 0.85 * duration_s + 0.1, fault


def test_long_runs_take_elasticsearch_down_for_minutes() -> None:
    plan = schedule(random.Random(3), 900, WORKERS)
    assert all(f.duration_s >= 60 for f in plan if f.kind == "es_down")


def test_a_seed_gives_the_same_plan() -> None:
    first = schedule(random.Random("faults-7"), 60, WORKERS)
    assert first == schedule(random.Random("faults-7"), 60, WORKERS)
    assert first != schedule(random.Random("faults-8"), 60, WORKERS)
