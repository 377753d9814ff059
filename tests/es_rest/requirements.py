"""A test's own conditions (`skip`, `requires`) judged against the cluster it would run on.

The cluster's version comes from `GET /`, its features from `GET
/_cluster/state?filter_path=nodes_features` (what Elasticsearch's own runner reads) plus the
synthetic `gte_vX` features the suite derives from versions (present when the cluster's
version is X or later), and its capabilities from `GET /_capabilities` (a cluster that does
not answer it has none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from tests.es_rest.suite import Section, SuiteFile

# Test-runner features this runner implements.
RUNNER_FEATURES = frozenset(
    {
        "allowed_warnings",
        "allowed_warnings_regex",
        "arbitrary_key",
        "capabilities",
        "close_to",
        "contains",
        "default_shards",
        "embedded_stash_key",
        "exists",
        "headers",
        "stash_in_key",
        "stash_in_path",
        "warnings",
        "warnings_regex",
    }
)

Version = tuple[int, ...]


def parse_version(text: str) -> Version:
    """`8.19.0` (any `-SNAPSHOT` or qualifier dropped) as a comparable tuple."""
    numbers = re.findall(r"\d+", text.split("-")[0])
    return tuple(int(n) for n in numbers[:3])


@dataclass(frozen=True)
class Cluster:
    """What the suite's conditions are judged against."""

    version: Version
    features: frozenset[str]
    http: httpx.Client | None = None

    def has(self, feature: str) -> bool:
        """Whether the cluster has a named or synthetic (`gte_vX`) feature."""
        if feature.startswith("gte_v"):
            return self.version >= parse_version(feature[5:])
        return feature in self.features

    def capable(self, check: dict[str, Any]) -> bool:
        """Whether `GET /_capabilities` says the cluster supports `check`."""
        if self.http is None:
            return False
        params = {
            "method": check.get("method", "GET"),
            "path": check.get("path", "/"),
            "capabilities": ",".join(_as_list(check.get("capabilities"))),
            "parameters": ",".join(_as_list(check.get("parameters"))),
        }
        answer = self.http.get("/_capabilities", params={k: v for k, v in params.items() if v})
        return answer.status_code == 200 and answer.json().get("supported") is True


def discover_cluster(http: httpx.Client) -> Cluster:
    """Version and features of the cluster behind `http`."""
    version = parse_version(http.get("/").raise_for_status().json()["version"]["number"])
    answer = http.get("/_cluster/state", params={"filter_path": "nodes_features"})
    features: frozenset[str] = frozenset()
    if answer.status_code == 200:
        per_node = [set(n.get("features", [])) for n in answer.json().get("nodes_features", [])]
        features = frozenset(set.intersection(*per_node)) if per_node else frozenset()
    return Cluster(version, features, http)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _in_range(version: Version, ranges: str) -> bool:
    if ranges.strip() == "all":
        return True
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        lower = parse_version(low) if low.strip() else (0,)
        upper = parse_version(high) if high.strip() else (10**6,)
        if lower <= version <= upper:
            return True
    return False


def _conditions(file: SuiteFile, test: Section) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for section in (file.setup, file.teardown, test):
        if section is None:
            continue
        for kind, body in section.steps:
            if kind in ("skip", "requires") and isinstance(body, dict):
                found.append((kind, body))
    return found


def unmet(file: SuiteFile, test: Section, cluster: Cluster) -> tuple[str, str] | None:
    """Why the suite itself does not run this test here, if it does not.

    ("runner", why): it needs a runner feature this runner lacks; ("cluster", why): it needs a
    cluster feature or capability the cluster does not declare; ("suite", why): the suite
    skips it on this version or muted it.
    """
    for kind, body in _conditions(file, test):
        reason = body.get("reason", "")
        features = _as_list(body.get("test_runner_features")) + (
            _as_list(body.get("features")) if kind == "skip" else []
        )
        lacking = [f for f in features if f not in RUNNER_FEATURES]
        if lacking:
            return "runner", f"needs runner features {lacking}"
        if kind == "requires":
            missing = [f for f in _as_list(body.get("cluster_features")) if not cluster.has(f)]
            if missing:
                return "cluster", f"requires cluster features {missing} ({reason})"
            for check in _as_list(body.get("capabilities")):
                if not cluster.capable(check):
                    return "cluster", f"requires capability {check} ({reason})"
            continue
        if "awaits_fix" in body:
            return "suite", f"muted upstream: {body['awaits_fix']}"
        if "version" in body and _in_range(cluster.version, str(body["version"])):
            return "suite", f"skipped on this version ({body['version']}): {reason}"
        present = [f for f in _as_list(body.get("cluster_features")) if cluster.has(f)]
        if present:
            return "suite", f"skipped with cluster features {present}: {reason}"
        for issue in _as_list(body.get("known_issues")):
            if cluster.has(issue["cluster_feature"]) and not cluster.has(issue["fixed_by"]):
                return "suite", f"known issue {issue}: {reason}"
        if "os" in body:
            return "runner", "needs runner feature skip_os"
    return None
