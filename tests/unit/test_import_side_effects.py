"""Importing a module builds no Celery app, client or connection: only running code does."""

from __future__ import annotations

import subprocess
import sys

from tests.support.procs import ROOT

# The Celery app modules, by design: `celery -A <module>` loads the app they build.
APP_MODULES = (
    "services.core.celery_app",
    "services.es_worker",
    "services.http_worker",
    "services.scheduler",
    "services.core.tracking.task",
    # The worker's consumer (Celery's `worker_consumer`): loaded by a worker, on its app.
    "services.core.tracking.poison",
    "services.core.canary",
    "services.core.storage.tasks",
    "services.core.operations.cli",
)

CHECK = r"""
import gc, importlib, pkgutil, sys
import celery, redis, sqlalchemy.engine, httpx, elasticsearch
skip = tuple(sys.argv[1:])
kinds = (celery.Celery, redis.Redis, sqlalchemy.engine.Engine, httpx.Client, httpx.AsyncClient,
         elasticsearch.AsyncElasticsearch, elasticsearch.Elasticsearch)
import services
# What every process imports first (metrics refuse to load before it).
import services.core.observability.boot
bad = []
for info in pkgutil.walk_packages(services.__path__, "services."):
    name = info.name
    if name.startswith(skip) or ".migrations" in name or name.endswith("__main__"):
        continue
    importlib.import_module(name)
    built = [type(o).__name__ for o in gc.get_objects() if issubclass(type(o), kinds)]
    if built:
        bad.append(f"{name}: {built}")
        break
print("\n".join(bad))
"""


def test_importing_a_module_builds_no_app_client_or_connection() -> None:
    answer = subprocess.run(
        [sys.executable, "-c", CHECK, *APP_MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == ""
