"""The connections the chart's NetworkPolicies allow, as np-guard's network-config-analyzer
(`nca`, PyPI network-config-analyzer, in .venv-nca: `make nca`) computes them.

The rendered workloads run in the release's namespace beside a model of the cluster around
them: an ingress controller, Prometheus, Redis and PostgreSQL, Elasticsearch, ChatbotMobile
and a stranger, each a pod in the namespace the ci values files name for it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.chart.chart import NAMESPACE, Doc
from tests.support.procs import ROOT

NCA = ROOT / ".venv-nca/bin/nca"


@dataclass(frozen=True)
class Peer:
    """A pod of the cluster that is not the release's."""

    namespace: str
    name: str
    port: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


INGRESS = Peer("ingress-nginx", "ingress-nginx-controller", 443)
PROMETHEUS = Peer("monitoring", "prometheus", 9090)
REDIS = Peer("data", "redis", 6379)
POSTGRESQL = Peer("data", "postgresql", 5432)
ELASTICSEARCH = Peer("search", "elasticsearch", 9200)
CHATBOT = Peer("chatbot", "chatbotmobile", 8090)
STRANGER = Peer("elsewhere", "stranger", 8080)
PEERS = (INGRESS, PROMETHEUS, REDIS, POSTGRESQL, ELASTICSEARCH, CHATBOT, STRANGER)
WORKLOAD_KINDS = {"Deployment", "Job", "Pod", "NetworkPolicy"}


def _pod(peer: Peer) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "peer"}
    if peer.port:
        container["ports"] = [{"containerPort": peer.port, "name": "main"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": peer.name, "namespace": peer.namespace, "labels": {"app": peer.name}},
        "spec": {"containers": [container]},
    }


def _namespace(name: str) -> dict[str, Any]:
    # The label every namespace carries since Kubernetes 1.21 (NetworkPolicies select by it).
    labels = {"kubernetes.io/metadata.name": name}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


_CONN = re.compile(r"^(\S+?)\[\w+\] => (\S+?)\[\w+\] : (.+)$")
_PORTS = re.compile(r"dst_ports:([0-9,\-]+)")


@dataclass(frozen=True)
class Connectivity:
    """Allowed connections: (source, destination) -> ports, None meaning every port."""

    allowed: dict[tuple[str, str], frozenset[int] | None]

    def allows(self, source: str, destination: str, port: int) -> bool:
        """Whether `source` may open a TCP connection to `destination` on `port`."""
        if (source, destination) not in self.allowed:
            return False
        ports = self.allowed[(source, destination)]
        return ports is None or port in ports

    def reaches(self, source: str, destination: str) -> bool:
        """Whether any connection at all is allowed."""
        return (source, destination) in self.allowed


def _ports(text: str) -> frozenset[int] | None:
    if text.strip() == "All connections":
        return None
    found: set[int] = set()
    for group in _PORTS.findall(text):
        for part in group.split(","):
            low, _, high = part.partition("-")
            found.update(range(int(low), int(high or low) + 1))
    return frozenset(found)


def connectivity(docs: list[Doc] | tuple[Doc, ...], workdir: Path) -> Connectivity:
    """What `nca --connectivity` says the rendered policies allow between every two pods."""
    if not NCA.exists():
        raise RuntimeError(f"{NCA} is missing: run `make nca` (make test does)")
    release = []
    for doc in docs:
        if doc.kind in WORKLOAD_KINDS:
            body = {**doc.body, "metadata": {**doc.body["metadata"], "namespace": NAMESPACE}}
            release.append(body)
    (workdir / "release.yaml").write_text(yaml.safe_dump_all(release))
    (workdir / "peers.yaml").write_text(yaml.safe_dump_all([_pod(p) for p in PEERS]))
    names = sorted({NAMESPACE, *(p.namespace for p in PEERS)})
    (workdir / "namespaces.yaml").write_text(yaml.safe_dump_all([_namespace(n) for n in names]))
    answer = subprocess.run(
        [
            str(NCA),
            "--connectivity", str(workdir / "release.yaml"),
            "--pod_list", str(workdir / "release.yaml"),
            "--pod_list", str(workdir / "peers.yaml"),
            "--ns_list", str(workdir / "namespaces.yaml"),
            "--output_endpoints", "deployments",
            "--output_format", "txt_no_fw_rules",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stdout[-2000:] + answer.stderr[-2000:]
    allowed: dict[tuple[str, str], frozenset[int] | None] = {}
    for line in answer.stdout.splitlines():
        match = _CONN.match(line.strip())
        if match:
            allowed[(match[1], match[2])] = _ports(match[3])
    assert allowed, answer.stdout[-2000:]
    return Connectivity(allowed)
