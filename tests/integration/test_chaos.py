"""The CI-sized chaos run: the whole stack, every write kind, every fault, nothing lost.

The seed is random unless CHAOS_SEED is set; it is printed, so a failing run can be repeated
with `make chaos SEED=<seed>`.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import ROOT

pytestmark = pytest.mark.slow
SUMMARY = re.compile(
    r"^accepted=(\d+) delivered=(\d+) lost=(\d+) duplicated_effects=(\d+) failed=(\d+) "
    r"max_delay_s=([\d.]+) seed=(\d+)$"
)


@pytest.mark.timeout(900)
def test_a_minute_of_chaos_loses_nothing(tmp_path: Path) -> None:
    seed = os.environ.get("CHAOS_SEED") or str(random.SystemRandom().randrange(1, 10**6))
    print(f"chaos seed {seed}")
    done = subprocess.run(
        [sys.executable, "-m", "tools.chaos", "--duration", "60", "--seed", seed,
         "--workdir", str(tmp_path / "chaos")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=840,
    )  # fmt: skip
    output = done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    found = SUMMARY.match(lines[-1]) if lines else None
    assert found is not None, output[-6000:]
    accepted, delivered, lost, duplicated, failed = map(int, found.groups()[:5])
    assert (lost, duplicated, failed) == (0, 0, 0), output[-6000:]
    assert accepted == delivered > 100, output[-6000:]
    assert done.returncode == 0, output[-6000:]
    # Every fault kind was injected.
    for kind in ("es_down", "chatbot_errors", "worker_sigkill", "worker_sigterm",
                 "redis_restart", "api_restart"):  # fmt: skip
        assert f" {kind} " in done.stdout, kind
