"""What would fail in the cluster fails at render time instead, and what the chart offers in
its place renders as the cluster needs it."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest

from tests.chart.chart import CHART, container, find, load_values, merge, render

MINIMAL = load_values(CHART / "ci/minimal-values.yaml")
NO_CLAIM = {"storage": {"existingClaim": ""}}


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        # KEDA's outstanding-work trigger reads a series only a scrape produces.
        ({"monitoring": {"scrape": "none"}}, "keda.outstanding.enabled needs monitoring.scrape"),
        # An emptyDir is per pod: other API replicas and the http-worker never see an upload.
        ({**NO_CLAIM, "api": {"replicas": 2}}, "storage.existingClaim"),
        ({**NO_CLAIM, "api": {"replicas": 1}}, "storage.existingClaim"),
        ({"api": {"ingress": {"enabled": True, "paths": ["/"]}}}, "/metrics"),
        ({"api": {"ingress": {"enabled": True, "paths": ["/health"]}}}, "/health/celery"),
        ({"monitoring": {"alertmanagerConfig": {"enabled": True}}}, "alertmanagerConfig.critical"),
        ({"monitoring": {"prometheusRule": {"enabled": True}}}, "runbookBaseUrl"),
        (
            {"config": {"authJwksUrl": "https://id/jwks", "authIssuer": "i", "authAudience": "a"}},
            "helmTest.tokenSecret",
        ),
        (
            {"networkPolicy": {"enabled": True, "ingressFrom": [{"podSelector": {}}]}},
            "networkPolicy.metricsFrom",
        ),
        (
            {"redis": {"tls": {"enabled": True}, "sentinel": {"enabled": True, "hosts": ["s:1"]}}},
            "redis.tls with redis.sentinel",
        ),
    ],
)
def test_the_render_refuses_what_would_fail_in_the_cluster(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm_python.HelmError) as refused:
        render(merge(MINIMAL, values))
    assert complaint in str(refused.value)


def test_the_chart_can_manage_the_uploads_claim() -> None:
    persistence = {"create": True, "storageClass": "efs", "size": "20Gi"}
    docs = render(merge(MINIMAL, {"storage": {"existingClaim": "", "persistence": persistence}}))
    claim = find(docs, "PersistentVolumeClaim", "-uploads").body["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"]
    assert claim["storageClassName"] == "efs"
    assert claim["resources"]["requests"]["storage"] == "20Gi"
    for component in ("-api", "-http-worker", "-scheduler"):
        volumes = find(docs, "Deployment", component).body["spec"]["template"]["spec"]["volumes"]
        uploads = next(v for v in volumes if v["name"] == "uploads")
        assert uploads == {
            "name": "uploads",
            "persistentVolumeClaim": {"claimName": "dw-durable-writes-uploads"},
        }


def _routed(ingress: dict[str, Any], path: str) -> bool:
    """Whether an Ingress sends `path` to a backend (Kubernetes' Prefix and Exact matching)."""
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            wanted = entry["path"]
            if entry["pathType"] == "Exact" and path == wanted:
                return True
            if entry["pathType"] == "Prefix":
                elements = [e for e in wanted.split("/") if e]
                if [e for e in path.split("/") if e][: len(elements)] == elements:
                    return True
    return False


def test_the_public_ingress_routes_the_api_and_never_metrics_or_health() -> None:
    docs = render(merge(MINIMAL, {"api": {"ingress": {"enabled": True}}}))
    ingress = find(docs, "Ingress", "-api").body
    for public in ("/api/v1/products/p-1", "/api/v1/tasks/t/status", "/api/v1/files/k?sig=x"):
        assert _routed(ingress, public.split("?")[0]), public
    for private in ("/metrics", "/health/celery", "/health/ready", "/docs", "/openapi.json"):
        assert not _routed(ingress, private), private


def test_receivers_and_the_runbook_base_come_from_values() -> None:
    hook = {"webhookConfigs": [{"url": "https://pager.example.com/hook"}]}
    chat = {"webhookConfigs": [{"url": "https://chat.example.com/hook"}]}
    docs = render(
        merge(
            MINIMAL,
            {
                "monitoring": {
                    "alertmanagerConfig": {"enabled": True, "critical": hook, "warning": chat},
                    "prometheusRule": {
                        "enabled": True,
                        "runbookBaseUrl": "https://git.example.com/dw/-/blob/v1/",
                    },
                }
            },
        )
    )
    spec = find(docs, "AlertmanagerConfig", "").body["spec"]
    assert {r["name"]: r["webhookConfigs"] for r in spec["receivers"]} == {
        "durable-critical": hook["webhookConfigs"],
        "durable-warning": chat["webhookConfigs"],
    }
    rules = find(docs, "PrometheusRule", "").body["spec"]["groups"]
    urls = [r["annotations"]["runbook_url"] for g in rules for r in g["rules"] if "alert" in r]
    assert len(urls) >= 10
    for url in urls:
        assert re.fullmatch(
            r"https://git\.example\.com/dw/-/blob/v1/docs/runbook\.md#durable\w+", url
        )


def test_an_image_digest_pins_every_container_of_the_image() -> None:
    digest = "sha256:" + "ab" * 32
    docs = render(
        merge(
            load_values(CHART / "ci/full-values.yaml"),
            {"image": {"digest": digest}, "celeryExporter": {"image": {"digest": digest}}},
        )
    )
    images = {container(d)["image"] for d in docs if d.kind in {"Deployment", "Job", "Pod"}}
    assert images == {
        f"ghcr.io/durable-writes/durable-writes@{digest}",
        f"danihodovic/celery-exporter@{digest}",
    }


def test_managed_redis_tls_and_acl_user_reach_every_client_keda_included() -> None:
    tls = {"enabled": True, "caSecret": {"name": "redis-ca", "key": "ca.pem"}}
    values = merge(
        load_values(CHART / "ci/full-values.yaml"),
        {"redis": {"host": "redis.cache.example.com", "port": 6380, "username": "durable",
                   "tls": tls, "sentinel": {"enabled": False}}},
    )  # fmt: skip
    docs = render(values)
    ca = "/etc/durable-writes/redis-ca/ca.crt"
    for doc in docs:
        if doc.kind in {"Deployment", "Job", "Pod"}:
            env = {v["name"]: v.get("value") for v in container(doc).get("env", [])}
            assert env["REDIS_URL"].startswith("rediss://"), doc.name
            assert env["REDIS_URL"].endswith(f"?ssl_cert_reqs=required&ssl_ca_certs={ca}")
    api_url = {
        v["name"]: v.get("value") for v in container(find(docs, "Deployment", "-api"))["env"]
    }
    assert api_url["REDIS_URL"].startswith("rediss://durable:$(REDIS_PASSWORD)@redis.cache")
    exporter = container(find(docs, "Deployment", "-celery-exporter"))
    assert exporter["args"][-4:] == [
        "--broker-ssl-option", "ssl_cert_reqs=2", "--broker-ssl-option", f"ssl_ca_certs={ca}"
    ]  # fmt: skip
    for scaled in (d for d in docs if d.kind == "ScaledObject"):
        (trigger,) = [t for t in scaled.body["spec"]["triggers"] if t["type"] == "redis"]
        assert trigger["metadata"]["enableTLS"] == "true"
        assert trigger["metadata"]["username"] == "durable"
        assert trigger["authenticationRef"]["name"] == "dw-durable-writes-redis"
    auth = find(docs, "TriggerAuthentication", "-redis").body["spec"]["secretTargetRef"]
    assert {(r["parameter"], r["name"], r["key"]) for r in auth} == {
        ("password", "dw-durable-writes", "REDIS_PASSWORD"),
        ("ca", "redis-ca", "ca.pem"),
    }
