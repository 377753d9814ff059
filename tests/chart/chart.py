"""The chart rendered by Helm's own engine (helm-python-sdk), and what the tests ask of it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import yaml

from services.core.config import Settings
from tests.support.procs import ROOT

CHART = ROOT / "charts/durable-writes"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SCHEMAS = Path(__file__).parent / "schemas"
RELEASE = "dw"
NAMESPACE = "durable"
KUBE_VERSION = "1.31"
# The official `kubernetes` client pins python-dateutil>=3, which celery refuses: its models run
# in a virtualenv of their own (`make kube-models`).
KUBE_VENV_PYTHON = ROOT / ".venv-kube/bin/python"

helm_python.disable_logging()


@dataclass(frozen=True)
class Doc:
    """One rendered object and the template it came from."""

    template: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def load_values(path: Path) -> dict[str, Any]:
    """A values file as a dict."""
    values: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return values


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it, key by key (as Helm merges values files)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def render(
    values: dict[str, Any], *, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[Doc]:
    """Every object the chart renders for `values` (hooks and the test Pod included)."""
    manifests = helm_python.Chart.load(CHART).render(
        copy.deepcopy(values), name=release, namespace=namespace, is_install=True
    )
    docs: list[Doc] = []
    for template, text in sorted(manifests.items()):
        if not template.endswith(".yaml"):
            continue
        docs.extend(Doc(template, body) for body in yaml.safe_load_all(text) if body)
    return docs


@cache
def rendered(name: str) -> tuple[Doc, ...]:
    """The objects of one ci/*-values.yaml file, rendered once per session."""
    return tuple(render(load_values(CHART / "ci" / name)))


def notes(values: dict[str, Any]) -> str:
    """The rendered NOTES.txt."""
    manifests = helm_python.Chart.load(CHART).render(
        copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE
    )
    return next(text for template, text in manifests.items() if template.endswith("NOTES.txt"))


def find(docs: tuple[Doc, ...] | list[Doc], kind: str, suffix: str = "") -> Doc:
    """The one object of `kind` whose name ends with `suffix`."""
    found = [d for d in docs if d.kind == kind and d.name.endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[d.name for d in found]}"
    return found[0]


def container(doc: Doc) -> dict[str, Any]:
    """The first container of a workload."""
    spec = doc.body["spec"]
    pod = spec["template"]["spec"] if "template" in spec else spec
    first: dict[str, Any] = pod["containers"][0]
    return first


def process_env(docs: tuple[Doc, ...] | list[Doc], workload: Doc) -> dict[str, str]:
    """The environment the kubelet gives the workload's container (Secret values and fields
    left out; $(VAR) references expanded as the kubelet does)."""
    c = container(workload)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(docs, "ConfigMap", source["configMapRef"]["name"]).body["data"])
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion."""
    for name, value in env.items():
        text = text.replace(f"$({name})", value)
    return text


def settings_from(env: dict[str, str], **overrides: str) -> Settings:
    """The settings a process gets from exactly this environment (no .env, no other variables)."""
    fields: dict[str, Any] = {
        k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields
    }
    return Settings.model_validate({**fields, **overrides})


def kube_models(docs: list[dict[str, Any]]) -> list[str]:
    """Errors of the official client's pydantic models (extra fields forbidden) per object."""
    if not KUBE_VENV_PYTHON.exists():
        raise RuntimeError(
            f"{KUBE_VENV_PYTHON} is missing: run `make kube-models` (make test does)"
        )
    answer = subprocess.run(
        [str(KUBE_VENV_PYTHON), str(Path(__file__).parent / "kube_models.py")],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert answer.returncode == 0, answer.stderr
    errors: list[str] = json.loads(answer.stdout)
    return errors
