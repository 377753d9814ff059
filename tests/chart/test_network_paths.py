"""The paths the release needs are open and the others closed, as network-config-analyzer
computes them from the rendered NetworkPolicies (tests/chart/network.py), for every
supported values file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.chart import CHART, CI_VALUES, NAMESPACE, Doc, container, load_values, rendered
from tests.chart.network import (
    CHATBOT,
    ELASTICSEARCH,
    INGRESS,
    POSTGRESQL,
    PROMETHEUS,
    REDIS,
    STRANGER,
    Peer,
    connectivity,
)

FILES = [p.name for p in CI_VALUES]
WITH_POLICIES = [
    n for n in FILES if load_values(CHART / "ci" / n).get("networkPolicy", {}).get("enabled")
]
PREFIX = f"{NAMESPACE}/dw-durable-writes-"
# Who opens connections to what (README, Install on Kubernetes: "Network paths").
USES = {
    "api": (REDIS, POSTGRESQL, ELASTICSEARCH, CHATBOT),
    "es-worker": (REDIS, POSTGRESQL, ELASTICSEARCH),
    "http-worker": (REDIS, POSTGRESQL, CHATBOT),
    "scheduler": (REDIS, POSTGRESQL),
    "flower": (REDIS,),
    "celery-exporter": (REDIS,),
    "migrate": (POSTGRESQL,),
}


def _ports(doc: Doc) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(doc).get("ports", [])}


def _workloads(name: str) -> dict[str, Doc]:
    return {
        d.name.removeprefix("dw-durable-writes-"): d
        for d in rendered(name)
        if d.kind in {"Deployment", "Job", "Pod"}
    }


def needed(name: str) -> list[tuple[str, str, int]]:
    """(source, destination, port) of every connection the release cannot work without."""
    workloads = _workloads(name)
    api = _ports(workloads["api"])["http"]
    paths = [(INGRESS.ref, f"{PREFIX}api", api), (f"{PREFIX}test", f"{PREFIX}api", api)]
    if "flower" in workloads and load_values(CHART / "ci" / name).get("flower", {}).get(
        "ingress", {}
    ).get("enabled"):
        paths.append((INGRESS.ref, f"{PREFIX}flower", _ports(workloads["flower"])["flower"]))
    # The scraper reaches every port the PodMonitor/ServiceMonitor scrapes.
    for component, doc in workloads.items():
        for port_name, port in _ports(doc).items():
            if port_name in {"metrics"} or (component == "api" and port_name == "http"):
                paths.append((PROMETHEUS.ref, f"{PREFIX}{component}", port))
    for component, peers in USES.items():
        if component in workloads:
            paths += [(f"{PREFIX}{component}", p.ref, p.port or 0) for p in peers]
    return paths


@pytest.mark.parametrize("name", FILES)
def test_every_path_the_release_needs_is_open(name: str, tmp_path: Path) -> None:
    allowed = connectivity(rendered(name), tmp_path)
    paths = needed(name)
    assert len(paths) >= 15
    closed = [p for p in paths if not allowed.allows(*p)]
    assert closed == [], f"closed by the NetworkPolicies of {name}: {closed}"


@pytest.mark.parametrize("name", WITH_POLICIES)
def test_nothing_else_reaches_the_release(name: str, tmp_path: Path) -> None:
    allowed = connectivity(rendered(name), tmp_path)
    workloads = _workloads(name)
    ours = {f"{PREFIX}{c}" for c in workloads}
    opened: list[str] = []
    for target in sorted(ours):
        if allowed.reaches(STRANGER.ref, target):
            opened.append(f"a pod of another namespace reaches {target}")
        if allowed.reaches(f"{PREFIX}flower", target):
            opened.append(f"flower reaches {target}")
    for component in ("es-worker", "http-worker", "scheduler", "celery-exporter", "migrate"):
        target = f"{PREFIX}{component}"
        if target in ours and allowed.reaches(INGRESS.ref, target):
            opened.append(f"the ingress controller reaches {target}")
    for component in ("flower", "migrate", "test"):
        target = f"{PREFIX}{component}"
        if target in ours and allowed.reaches(PROMETHEUS.ref, target):
            opened.append(f"the scraper reaches {target}")
    # The scraper reaches the ports it scrapes and no other.
    for component, doc in workloads.items():
        for port_name, port in _ports(doc).items():
            scraped = port_name == "metrics" or (component == "api" and port_name == "http")
            if not scraped and allowed.allows(PROMETHEUS.ref, f"{PREFIX}{component}", port):
                opened.append(f"the scraper reaches {component}:{port_name}")
    assert opened == []


def test_the_analyzer_sees_a_policy_that_shuts_the_scraper_out(tmp_path: Path) -> None:
    docs = [d for d in rendered("full-values.yaml")]
    policy = next(d for d in docs if d.kind == "NetworkPolicy" and d.name.endswith("-es-worker"))
    shut = {**policy.body, "spec": {**policy.body["spec"], "ingress": []}}
    docs = [d if d is not policy else Doc(d.template, shut) for d in docs]
    allowed = connectivity(docs, tmp_path)
    assert not allowed.reaches(PROMETHEUS.ref, f"{PREFIX}es-worker")
    assert allowed.allows(PROMETHEUS.ref, f"{PREFIX}http-worker", 9402)
    assert isinstance(STRANGER, Peer)
