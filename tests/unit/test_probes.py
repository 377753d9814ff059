import os
import time
from pathlib import Path

from services.core.probes import main, worker_live


def test_worker_liveness_is_the_age_of_the_heartbeat(tmp_path: Path) -> None:
    heartbeat = tmp_path / "worker.alive"
    assert worker_live(heartbeat, 60) == (
        False,
        f"no heartbeat file at {heartbeat}: the worker has not started consuming",
    )
    heartbeat.touch()
    assert worker_live(heartbeat, 60)[0]
    old = time.time() - 61
    os.utime(heartbeat, (old, old))
    live, why = worker_live(heartbeat, 60)
    assert not live and "not consuming" in why


def test_the_probe_command_exits_non_zero_when_not_live(tmp_path: Path) -> None:
    heartbeat = tmp_path / "worker.alive"
    assert main(["worker-live", "--file", str(heartbeat), "--max-age", "5"]) == 1
    heartbeat.touch()
    assert main(["worker-live", "--file", str(heartbeat), "--max-age", "5"]) == 0
