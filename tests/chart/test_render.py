"""Every supported values file renders with Helm's engine, lints strictly, and every object it
renders validates against Kubernetes' schemas, the client's models and the CRD schemas."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest

from services.core.config import DEV_JWT_SECRET, DEV_SECRETS_KEY
from tests.chart.chart import (
    CHART,
    CI_VALUES,
    KUBE_VERSION,
    SCHEMAS,
    Doc,
    container,
    find,
    kube_models,
    load_values,
    merge,
    notes,
    render,
    rendered,
)

FILES = [p.name for p in CI_VALUES]
CRD_KINDS = {
    ("keda.sh", "ScaledObject"),
    ("keda.sh", "TriggerAuthentication"),
    ("monitoring.coreos.com", "ServiceMonitor"),
    ("monitoring.coreos.com", "PodMonitor"),
    ("monitoring.coreos.com", "PrometheusRule"),
    ("monitoring.coreos.com", "AlertmanagerConfig"),
}
WORKLOADS = {"Deployment", "Job", "Pod"}


def test_the_supported_shapes_are_there() -> None:
    assert FILES == [
        "full-values.yaml",
        "keda-off-values.yaml",
        "minimal-values.yaml",
        "production-values.yaml",
    ]


@pytest.mark.parametrize("name", FILES)
def test_lint_is_clean_in_strict_mode(name: str) -> None:
    report = helm_python.lint(
        CHART, load_values(CHART / "ci" / name), strict=True, kube_version=f"v{KUBE_VERSION}.0"
    )
    # Severity 1 is "info" (Chart.yaml has no icon); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report
    assert report["errors"] == []


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"redis": {"hots": "redis"}}, "'hots' not allowed"),
        ({"workers": {"es": {"keda": {"maxReplicas": 3}}}}, "'maxReplicas' not allowed"),
        ({"config": {"extraEnv": {"DATABASE_URL": "postgresql://u:p@db/x"}}}, "DATABASE_URL"),
        ({"monitoring": {"scrape": "servicemonitor"}}, "scrape"),
        # A cluster is never a laptop: development takes the public secrets and loopback.
        ({"config": {"environment": "development"}}, "environment"),
    ],
)
def test_the_schema_refuses_typos_and_secrets_in_the_configmap(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmError) as refused:
        render(values)
    assert complaint in str(refused.value)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"secrets": {"secretsKey": DEV_SECRETS_KEY}}, "development secrets.secretsKey"),
        ({"secrets": {"authJwtSecret": DEV_JWT_SECRET}}, "development secrets.authJwtSecret"),
        ({"secrets": {"flowerBasicAuth": ""}}, "flowerBasicAuth"),
        ({"workers": {"es": {"terminationGracePeriodSeconds": 60}}}, "must exceed"),
        ({"workers": {"http": {"keda": {"minReplicaCount": 11}}}}, "must not exceed"),
        (
            {
                "workers": {"es": {"keda": {"minReplicaCount": 0}}},
                "keda": {"outstanding": {"enabled": False}},
            },
            "minReplicaCount 0 needs keda.outstanding",
        ),
    ],
)
def test_production_values_refuse_what_the_settings_refuse(
    values: dict[str, Any], complaint: str
) -> None:
    base = load_values(CHART / "ci/minimal-values.yaml")
    merged = merge(base, values)
    with pytest.raises(helm_python.HelmError) as refused:
        render(merged)
    assert complaint in str(refused.value)


@pytest.mark.parametrize("name", FILES)
def test_core_objects_validate_strictly_for_the_pinned_kubernetes(name: str) -> None:
    core = [
        d
        for d in rendered(name)
        if "." not in d.body["apiVersion"].split("/")[0]
        or d.body["apiVersion"].startswith(("networking.k8s.io", "policy", "autoscaling"))
    ]
    assert core
    for doc in core:
        kubernetes_validate.validate(doc.body, KUBE_VERSION, strict=True)
    assert kube_models([d.body for d in core]) == []


def test_the_validators_do_refuse_a_misspelled_field() -> None:
    doc = find(rendered("minimal-values.yaml"), "Deployment", "-api").body
    broken = json.loads(json.dumps(doc))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)
    assert len(kube_models([broken])) == 1


@cache
def _closed_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (SCHEMAS / group / f"{kind.lower()}_{version}.json").read_text()
    )
    _close(schema)
    return schema


def _close(node: Any) -> None:
    """additionalProperties: false wherever the CRD leaves an object with properties open."""
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


def crd_errors(doc: Doc) -> list[str]:
    """Errors of a custom object against its closed CRD schema."""
    group, version = doc.body["apiVersion"].split("/")
    validator = jsonschema.Draft7Validator(_closed_schema(group, doc.kind, version))
    return [
        f"{doc.name}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(doc.body)
    ]


@pytest.mark.parametrize("name", FILES)
def test_custom_objects_validate_against_their_closed_crd_schemas(name: str) -> None:
    custom = [
        d for d in rendered(name) if (d.body["apiVersion"].split("/")[0], d.kind) in CRD_KINDS
    ]
    others = {d.body["apiVersion"] for d in rendered(name)} - {
        "v1",
        "apps/v1",
        "batch/v1",
        "policy/v1",
        "autoscaling/v2",
        "networking.k8s.io/v1",
        "keda.sh/v1alpha1",
        "monitoring.coreos.com/v1",
        "monitoring.coreos.com/v1alpha1",
    }
    assert others == set()
    for doc in custom:
        assert crd_errors(doc) == []
    for doc in (d for d in custom if d.kind == "ScaledObject"):
        # The CRD's CEL rule, which JSON Schema cannot express (maxReplicaCount defaults to 100).
        spec = doc.body["spec"]
        assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
        assert all(isinstance(v, str) for t in spec["triggers"] for v in t["metadata"].values())


def test_a_misspelled_scaledobject_field_is_refused_once_closed() -> None:
    doc = find(rendered("minimal-values.yaml"), "ScaledObject", "es-worker")
    broken = json.loads(json.dumps(doc.body))
    broken["spec"]["pollingIntervall"] = 5
    assert any("pollingIntervall" in e for e in crd_errors(Doc(doc.template, broken)))


def test_full_values_render_every_optional_object() -> None:
    kinds = {d.kind for d in rendered("full-values.yaml")}
    assert {
        "PodMonitor",
        "PrometheusRule",
        "AlertmanagerConfig",
        "Ingress",
        "NetworkPolicy",
        "ScaledObject",
        "TriggerAuthentication",
    } <= kinds
    names = {d.name for d in rendered("full-values.yaml") if d.kind == "Deployment"}
    assert names == {
        f"dw-durable-writes-{c}"
        for c in ("api", "es-worker", "http-worker", "scheduler", "flower", "celery-exporter")
    }
    assert "ServiceMonitor" in {d.kind for d in rendered("production-values.yaml")}


def test_keda_off_renders_replicas_and_cpu_autoscalers_only() -> None:
    docs = rendered("keda-off-values.yaml")
    assert not [d for d in docs if d.body["apiVersion"].startswith("keda.sh")]
    hpas = {
        d.body["spec"]["scaleTargetRef"]["name"]
        for d in docs
        if d.kind == "HorizontalPodAutoscaler"
    }
    assert hpas == {f"dw-durable-writes-{c}" for c in ("api", "es-worker", "http-worker")}
    for doc in docs:
        if doc.kind == "Deployment" and doc.name in hpas:
            assert "replicas" not in doc.body["spec"], doc.name  # the HPA owns it


@pytest.mark.parametrize("name", FILES)
def test_every_container_runs_non_root_read_only_without_capabilities(name: str) -> None:
    for doc in rendered(name):
        if doc.kind not in WORKLOADS:
            continue
        pod = (
            doc.body["spec"]["template"]["spec"]
            if "template" in doc.body["spec"]
            else doc.body["spec"]
        )
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts, (doc.name, c["name"])


@pytest.mark.parametrize("name", FILES)
def test_workers_outlive_their_soft_shutdown_and_the_scheduler_is_single(name: str) -> None:
    docs = rendered(name)
    soft = float(
        find(docs, "ConfigMap", "dw-durable-writes").body["data"]["WORKER_SOFT_SHUTDOWN_TIMEOUT_S"]
    )
    for suffix in ("-es-worker", "-http-worker", "-scheduler"):
        pod = find(docs, "Deployment", suffix).body["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > soft
        probe = pod["containers"][0]["livenessProbe"]["exec"]["command"]
        assert probe == ["python", "-m", "services.core.probes", "worker-live"]
    scheduler = find(docs, "Deployment", "-scheduler").body["spec"]
    assert scheduler["replicas"] == 1 and scheduler["strategy"] == {"type": "Recreate"}
    api = container(find(docs, "Deployment", "-api"))
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"


@pytest.mark.parametrize("name", FILES)
def test_no_secret_value_appears_outside_secrets(name: str) -> None:
    values = load_values(CHART / "ci" / name)
    secret_values = [
        v
        for k, v in values.get("secrets", {}).items()
        if k not in {"existingSecret", "extra"} and v
    ]
    secret_values += list(values.get("secrets", {}).get("extra", {}).values())
    for doc in rendered(name):
        if doc.kind == "Secret":
            continue
        text = json.dumps(doc.body)
        leaked = [v for v in secret_values if v in text or v.split(":")[-1] in text]
        assert leaked == [], f"{doc.kind}/{doc.name} shows a secret"
    assert not re.search(r"redis://:[^$]", json.dumps([d.body for d in rendered(name)]))


@pytest.mark.parametrize("name", FILES)
def test_pods_roll_when_config_changes(name: str) -> None:
    docs = rendered(name)
    before = find(docs, "Deployment", "-api").body["spec"]["template"]["metadata"]["annotations"]
    values = load_values(CHART / "ci" / name)
    values.setdefault("config", {})["logLevel"] = "DEBUG"
    after = find(render(values), "Deployment", "-api").body["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert before["checksum/config"] != after["checksum/config"]


def test_migrations_run_as_an_idempotent_hook_with_their_own_config() -> None:
    docs = rendered("minimal-values.yaml")
    job = find(docs, "Job", "-migrate").body
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert container(Doc("", job))["command"] == [
        "python",
        "-m",
        "services.core.tasklog.migrate",
        "upgrade",
    ]
    refs = container(Doc("", job))["envFrom"]
    for ref in refs:
        ((kind, target),) = ref.items()
        hook = find(docs, "ConfigMap" if kind == "configMapRef" else "Secret", target["name"])
        # Created before the Job, as hooks: a pre-install hook runs before the release's objects.
        assert int(hook.body["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            job["metadata"]["annotations"]["helm.sh/hook-weight"]
        )
    (database,) = [v for v in container(Doc("", job))["env"] if v["name"] == "DATABASE_URL"]
    assert database["valueFrom"]["secretKeyRef"]["name"] == "dw-durable-writes-migrate"
    # The hook's copy holds only what the migration reads.
    assert set(find(docs, "Secret", "-migrate").body["data"]) == {"DATABASE_URL"}
    production = find(rendered("production-values.yaml"), "Job", "-migrate").body
    (database,) = [v for v in container(Doc("", production))["env"] if v["name"] == "DATABASE_URL"]
    assert database["valueFrom"]["secretKeyRef"]["name"] == "durable-writes-secrets"


def test_notes_say_how_to_reach_the_api_and_flower() -> None:
    text = notes(load_values(CHART / "ci/minimal-values.yaml"))
    assert "svc/dw-durable-writes-api" in text and "/health/ready" in text
    assert "svc/dw-durable-writes-flower" in text and "helm test dw" in text


def test_each_component_has_its_own_affinity_and_spread() -> None:
    values = load_values(CHART / "ci/minimal-values.yaml")
    zone_a = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    values["api"] = {"affinity": zone_a}
    docs = render(values)

    def pod(suffix: str) -> dict[str, Any]:
        spec: dict[str, Any] = find(docs, "Deployment", suffix).body["spec"]["template"]["spec"]
        return spec

    assert pod("-api")["affinity"] == zone_a
    assert "affinity" not in pod("-es-worker")
    for component in ("api", "es-worker", "http-worker"):
        spread = pod(f"-{component}")["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
        }
        for constraint in spread:
            labels = constraint["labelSelector"]["matchLabels"]
            assert labels["app.kubernetes.io/component"] == component
            assert labels["app.kubernetes.io/instance"] == "dw"
            assert constraint["matchLabelKeys"] == ["pod-template-hash"]


# The Secret's keys each pod may read: its role's (services/core/config.py ROLE_SECRETS),
# REDIS_PASSWORD where it talks to Redis, and the downstream credentials it uses.
POD_SECRETS = {
    "api": {"DATABASE_URL", "SECRETS_KEY", "AUTH_JWT_SECRET", "REDIS_PASSWORD",
            "ELASTICSEARCH_API_KEY", "ELASTICSEARCH_PASSWORD", "CHATBOT_API_TOKEN",
            "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"},
    "es-worker": {"DATABASE_URL", "SECRETS_KEY", "REDIS_PASSWORD", "ELASTICSEARCH_API_KEY",
                  "ELASTICSEARCH_PASSWORD", "EMBEDDINGS_API_KEY"},
    "http-worker": {"DATABASE_URL", "SECRETS_KEY", "REDIS_PASSWORD", "CHATBOT_API_TOKEN",
                    "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"},
    "scheduler": {"DATABASE_URL", "SECRETS_KEY", "REDIS_PASSWORD", "S3_ACCESS_KEY_ID",
                  "S3_SECRET_ACCESS_KEY"},
    "flower": {"FLOWER_BASIC_AUTH", "REDIS_PASSWORD"},
    "celery-exporter": {"REDIS_PASSWORD"},
    "migrate": {"DATABASE_URL"},
    "test": {"AUTH_JWT_SECRET"},
}  # fmt: skip


@pytest.mark.parametrize("name", FILES)
def test_each_pod_gets_only_the_secrets_its_process_reads(name: str) -> None:
    from services.core.config import ROLE_SECRETS

    docs = rendered(name)
    secrets = {d.name for d in docs if d.kind == "Secret"} | {
        load_values(CHART / "ci" / name).get("secrets", {}).get("existingSecret")
    }
    for doc in docs:
        if doc.kind not in WORKLOADS:
            continue
        component = doc.body["metadata"]["labels"]["app.kubernetes.io/component"]
        c = container(doc)
        assert not [s for s in c.get("envFrom", []) if "secretRef" in s], doc.name
        given = {
            v["valueFrom"]["secretKeyRef"]["key"]
            for v in c.get("env", [])
            if "secretKeyRef" in v.get("valueFrom", {})
            and v["valueFrom"]["secretKeyRef"]["name"] in secrets | {f"{doc.name}"}
        }
        assert given <= POD_SECRETS[component], (doc.name, given - POD_SECRETS[component])
        env = {v["name"]: v.get("value") for v in c.get("env", [])}
        if component != "celery-exporter":
            role = env["PROCESS_ROLE"]
            # Everything the role's checks need reaches the pod (unless given another way).
            needed = set(ROLE_SECRETS[role]) - {"AUTH_JWT_SECRET"}
            assert needed <= given | {"AUTH_JWT_SECRET"}, (doc.name, needed - given)
    flower = [d for d in docs if d.kind == "Deployment" and d.name.endswith("-flower")]
    for doc in flower:
        assert "DATABASE_URL" not in json.dumps(doc.body)
