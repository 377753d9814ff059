"""Imported first by every Celery worker package: readies the multiprocess metrics directory.

A metric value opens its file in PROMETHEUS_MULTIPROC_DIR the first time it is used, so the
directory must be ready and empty before any of ours is, in the worker's main process,
before the pool forks; its children inherit the environment and share the directory.
"""

from __future__ import annotations

from services.core.observability.multiproc_dir import claim_before_first_metric

DIRECTORY = claim_before_first_metric()
