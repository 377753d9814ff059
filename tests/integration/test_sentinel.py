"""Redis Sentinel: with REDIS_URL listing sentinels, everything reaches the master they watch.

A private redis-server is the master and a private redis-server in sentinel mode watches it.
The settings take Celery's sentinel URL list and the master's name; the API's publish, our
own clients (guards, probes, reconciler, exporter) and a real worker all end up on the master.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis import Redis

from services.core import redisconn
from services.core.config import Settings
from services.core.db import session_factory
from services.core.health import redis_client
from services.core.observability.exporter import scrape_redis
from services.core.tasklog.repository import TaskLogRepository
from tests.support.flow import enqueuer, es_worker, isolated, wait_finished
from tests.support.procs import RedisServer, free_port, wait_until

MASTER = "durable-master"


@pytest.fixture
def master(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "master").start()
    yield server
    server.stop()


@pytest.fixture
def sentinel_url(tmp_path: Path, master: RedisServer) -> Iterator[str]:
    port = free_port()
    workdir = tmp_path / "sentinel"
    workdir.mkdir()
    # Sentinel rewrites its configuration file as it learns: it must be its own, writable.
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"
    )
    proc = subprocess.Popen(
        ["redis-server", str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"sentinel://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            client = Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
            return bool(client.sentinel_get_master_addr_by_name(MASTER))  # type: ignore[no-untyped-call]
        except Exception:
            return False

    try:
        wait_until(answers, 15, what="sentinel to know the master")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_settings_take_a_sentinel_list_with_its_master(settings: Settings) -> None:
    many = "sentinel://:pw@10.0.0.1:26379/0;sentinel://:pw@10.0.0.2:26379/0"
    taken = Settings.model_validate(
        {**settings.model_dump(), "redis_url": many, "redis_sentinel_master": MASTER}
    )
    assert redisconn.sentinel_nodes(taken.redis_url) == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    with pytest.raises(ValidationError, match="needs REDIS_SENTINEL_MASTER"):
        Settings.model_validate({**settings.model_dump(), "redis_url": many})
    with pytest.raises(ValidationError, match="needs a sentinel:// REDIS_URL"):
        Settings.model_validate({**settings.model_dump(), "redis_sentinel_master": MASTER})
    # In production a sentinel on loopback is refused like any Redis host on loopback.
    local = "sentinel://10.0.0.1:26379/0;sentinel://127.0.0.1:26379/0"
    with pytest.raises(ValidationError, match="REDIS_URL points at this machine"):
        Settings.model_validate(
            {
                **settings.model_dump(),
                "environment": "production",
                "redis_url": local,
                "redis_sentinel_master": MASTER,
            }
        )
    mixed = "sentinel://10.0.0.1:26379/0;redis://10.0.0.2:6379/0"
    with pytest.raises(ValidationError, match="every REDIS_URL part must be sentinel"):
        Settings.model_validate(
            {**settings.model_dump(), "redis_url": mixed, "redis_sentinel_master": MASTER}
        )


def test_every_client_and_a_worker_reach_the_master_through_the_sentinels(
    settings: Settings, tmp_path: Path, master: RedisServer, sentinel_url: str
) -> None:
    direct = isolated(settings, tmp_path, master)
    through = direct.model_copy(update={"redis_url": sentinel_url, "redis_sentinel_master": MASTER})
    master_client = Redis.from_url(master.url, decode_responses=True)

    # Our own clients (guards and probes; the exporter) write and read on the master.
    redis_client(through).set(f"{through.redis_key_prefix}probe", "via-sentinel")
    assert master_client.get(f"{through.redis_key_prefix}probe") == "via-sentinel"
    assert scrape_redis(through).ping()

    # The API's publish lands in the master's queue list...
    accepted = enqueuer(through).enqueue("canary_es", {})
    assert accepted.published
    queue = f"{through.redis_key_prefix}es"
    assert master_client.llen(queue) == 1

    # ...and a worker that knows only the sentinels takes it and runs it.
    worker = es_worker(
        through, tmp_path, REDIS_URL=sentinel_url, REDIS_SENTINEL_MASTER=MASTER
    ).start()
    try:
        repo = TaskLogRepository(session_factory(through.database_url))
        row = wait_finished(repo, accepted.task_id)
        assert row.status == "success"
        assert master_client.llen(queue) == 0
    finally:
        worker.stop()
        master_client.close()
