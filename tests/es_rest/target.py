"""Where the suite runs: the stand-in, or a real cluster (`ELASTICSEARCH_URL`), and cleanup.

After each test the suite deletes what the test created. On the stand-in that is a reset;
on a real cluster the indices that did not exist before the test are deleted, by name, and
nothing else: point it at a disposable cluster all the same, since a test may fail on an
index name that already exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tests.es_rest.requirements import Cluster, discover_cluster

REAL_URL = os.environ.get("ELASTICSEARCH_URL", "").split(",")[0] or None


@dataclass
class Target:
    """A cluster to run the suite on."""

    name: str
    http: httpx.Client
    cluster: Cluster
    reset: Callable[[], None]

    def indices(self) -> set[str]:
        """The names of the cluster's (visible) indices."""
        answer = self.http.get("/_mapping")
        answer.raise_for_status()
        return set(answer.json() or {})

    def clean(self, before: set[str] | None) -> None:
        """Remove what a test left: everything on the stand-in, new indices on a cluster."""
        if before is None:
            self.reset()
            return
        created = sorted(self.indices() - before)
        for start in range(0, len(created), 50):
            names = ",".join(created[start : start + 50])
            self.http.delete(f"/{names}").raise_for_status()


def open_target(name: str, url: str, reset: Callable[[], None] | None = None) -> Target:
    """A target at `url`; `reset` drops all its data (the stand-in's control API)."""
    http = httpx.Client(base_url=url, timeout=30, trust_env=False, verify=True)
    return Target(name, http, discover_cluster(http), reset or (lambda: None))
