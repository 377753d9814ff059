"""`make up` works on a fresh clone: the first thing a new user runs.

The committed HEAD is cloned into a temporary directory, where `make up` runs as a user would
start it: with no settings at all but free ports and a Redis key prefix of its own (so that
it runs beside other stacks on this machine), the same Python interpreter, and a virtualenv
of its own that `make up` creates and installs (the runtime packages, from wherever pip is
configured to find them). Then the API must become ready, a canary sent through it with a
token from `make token` must succeed, and Ctrl-C (SIGINT to the process group, as a terminal
sends it) must stop everything within the grace period.

It tests what is committed: run it after committing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.core.config import Settings
from tests.support.procs import ROOT, free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
# Settings of this test run (conftest) and its tooling that a new user would not have.
TEST_ONLY = {"TEST_POSTGRES_ADMIN_URL", "TEST_REDIS_URL", "CHAOS_SEED", "PYTEST_ADDOPTS"}


def _user_environment(settings: Settings) -> dict[str, str]:
    blocked = {name.upper() for name in Settings.model_fields} | TEST_ONLY
    env = {k: v for k, v in os.environ.items() if k not in blocked and k != "VIRTUAL_ENV"}
    ports = {
        name: str(free_port())
        for name in (
            "API_PORT",
            "FLOWER_PORT",
            "ES_STANDIN_PORT",
            "ES_STANDIN_CONTROL_PORT",
            "EMBEDDINGS_STANDIN_PORT",
            "EMBEDDINGS_STANDIN_CONTROL_PORT",
            "CHATBOT_STANDIN_PORT",
            "CHATBOT_STANDIN_CONTROL_PORT",
        )
    }
    return {
        **env,
        **ports,
        # The run's prefix: the session's cleanup removes these keys too.
        "REDIS_KEY_PREFIX": f"{settings.redis_key_prefix}fresh:",
        # The interpreter this run uses, not its virtualenv: the clone makes its own.
        "PYTHON": str(Path(sys.base_prefix) / "bin" / "python3"),
        "ES_WORKER_CONCURRENCY": "1",
        "HTTP_WORKER_CONCURRENCY": "1",
    }


def _clone(target: Path) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: there is no committed HEAD to clone")
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    return target


def _get(url: str, **kwargs: object) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5, trust_env=False, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError:
        return None


def test_make_up_on_a_fresh_clone_serves_a_canary_and_stops_on_ctrl_c(
    settings: Settings, tmp_path: Path
) -> None:
    clone = _clone(tmp_path / "clone")
    assert not (clone / "var").exists() and not (clone / ".venv").exists()
    env = _user_environment(settings)
    api = f"http://127.0.0.1:{env['API_PORT']}"
    log_path = tmp_path / "make-up.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        make = subprocess.Popen(
            ["make", "up"],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def ready() -> bool:
        if make.poll() is not None:
            raise RuntimeError(
                f"make up exited ({make.returncode}):\n{log_path.read_text()[-4000:]}"
            )
        answer = _get(f"{api}/health/ready")
        return answer is not None and answer.status_code == 200

    try:
        wait_until(ready, 600, interval_s=1, what="the fresh clone's API to be ready")
        ready_after_s = time.monotonic() - started
        # A service token: the canary belongs to no customer, so only a service sees its row.
        token = subprocess.run(
            ["make", "-s", "token", "ROLE=service"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert token.returncode == 0, token.stderr
        bearer = {"Authorization": f"Bearer {token.stdout.strip().splitlines()[-1]}"}
        sent = httpx.post(
            f"{api}/api/v1/canary",
            json={"queue": "es"},
            headers=bearer,
            timeout=10,
            trust_env=False,
        )
        assert sent.status_code == 202, sent.text

        def succeeded() -> bool:
            answer = _get(f"{api}{sent.json()['status_url']}", headers=bearer)
            return answer is not None and answer.json().get("status") == "success"

        wait_until(succeeded, 120, interval_s=0.5, what="the canary to succeed")
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal
        make.wait(120)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(30)
        # The clone's virtualenv is a few hundred MB; the log stays for a failure's reader.
        shutil.rmtree(clone, ignore_errors=True)
    output = log_path.read_text()
    print(f"fresh clone: API ready {ready_after_s:.0f} s after `make up` began")
    assert re.search(r"^devstack\s+\| stopped$", output, re.MULTILINE), output[-4000:]
    assert "killing it" not in output
