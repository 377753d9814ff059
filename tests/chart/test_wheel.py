"""The image's content, proven without a container engine, and the `helm test` script.

What the Dockerfile's final stage does is done here: the project's wheel is installed into a
clean virtualenv outside the source tree, and from there the migrations, the API, both
workers and the durable-tasks CLI run against real Redis and PostgreSQL. The chart's
`helm test` script (files/helm-test/canary.py) then runs against that stack, as its Pod would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.core import processes
from services.core.config import Settings
from tests.chart.chart import CHART
from tests.support.databases import own_database
from tests.support.procs import ROOT, free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv outside the source tree with only the project's wheel (and its deps)."""
    work = tmp_path_factory.mktemp("wheel")
    # What the Dockerfile's build stage copies, and nothing else.
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "services", source / "services", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--wheel-dir",
            str(work / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("durable_writes-*.whl")
    venv = work / "venv"
    base = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return venv


def _clean_env(settings: Settings, database_url: str, tmp: Path) -> dict[str, str]:
    keep = {"PATH", "HOME", "LANG", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"}
    return {
        **{k: v for k, v in os.environ.items() if k in keep},
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "ENVIRONMENT": "development",  # pointed at this machine
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_KEY_PREFIX": f"{settings.redis_key_prefix}wheel:",
        "API_PORT": str(free_port()),
        "ES_WORKER_METRICS_PORT": "0",
        "HTTP_WORKER_METRICS_PORT": "0",
        "ELASTICSEARCH_URL": f"http://127.0.0.1:{free_port()}",
        "STORAGE_LOCAL_DIR": str(tmp / "uploads"),
        "REMAP_SIGTERM": "SIGQUIT",
        "WORKER_SOFT_SHUTDOWN_TIMEOUT_S": "2",
    }


@pytest.fixture
def database() -> Iterator[str]:
    with own_database("wheel") as url:
        yield url


def test_the_wheel_runs_every_deployable_and_the_helm_test_passes_against_it(
    installed: Path, settings: Settings, database: str, tmp_path: Path
) -> None:
    bin_ = installed / "bin"
    env = _clean_env(settings, database, tmp_path)
    run = tmp_path / "run"  # outside the source tree: nothing can be imported from there
    run.mkdir()
    where = subprocess.run(
        [str(bin_ / "python"), "-c", "import services; print(services.__file__)"],
        cwd=run,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(installed) in where.stdout and str(ROOT) not in where.stdout
    for _ in range(2):  # the hook Job may run twice
        migrated = subprocess.run(
            [str(bin_ / "python"), "-m", "services.core.tasklog.migrate", "upgrade"],
            cwd=run,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrated.returncode == 0, migrated.stderr
    procs: list[subprocess.Popen[bytes]] = []
    python = str(bin_ / "python")
    commands = {
        "api": processes.API.command(python=python),
        **{
            worker.name: worker.command(python=python, host="wheel", concurrency=1)
            for worker in (processes.ES_WORKER, processes.HTTP_WORKER)
        },
    }
    try:
        for name, command in commands.items():
            with (tmp_path / f"{name}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        command,
                        cwd=run,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        env={**env, "WORKER_HEARTBEAT_FILE": str(tmp_path / f"{name}.alive")},
                    )
                )
        api = f"http://127.0.0.1:{env['API_PORT']}"

        def ready() -> bool:
            for proc, name in zip(procs, commands, strict=True):
                assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
            try:
                return httpx.get(f"{api}/health/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 60, interval_s=0.3, what="the installed API")
        canary = subprocess.run(
            [str(bin_ / "python"), str(CHART / "files/helm-test/canary.py")],
            cwd=run,
            env={**env, "API_URL": api, "CANARY_TIMEOUT_S": "60"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert canary.returncode == 0, canary.stdout + canary.stderr
        assert (
            "canary on es: success" in canary.stdout and "canary on http: success" in canary.stdout
        )
        counts = subprocess.run(
            [str(bin_ / "durable-tasks"), "counts"],
            cwd=run,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert counts.returncode == 0, counts.stderr
        assert "success" in counts.stdout
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_the_dockerfile_does_what_the_test_above_proves() -> None:
    text = DOCKERFILE.read_text()
    stages = text.split("\nFROM ")
    assert len(stages) == 3, "a build stage and a final stage"
    final = stages[-1]
    assert "slim" in final.splitlines()[0]
    assert "pip wheel" in stages[1] and "/opt/venv/bin/pip install /wheels/" in stages[1]
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert "USER 10001:10001" in final and "PYTHONDONTWRITEBYTECODE=1" in final
    assert "PYTHONUNBUFFERED=1" in final
    # Nothing but the virtualenv enters the final stage: no sources, tests or build tools.
    assert [line for line in final.splitlines() if line.startswith("COPY")] == [
        "COPY --from=build /opt/venv /opt/venv"
    ]
    assert "apt-get" not in final and "[test]" not in text
