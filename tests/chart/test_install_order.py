"""`helm install`, `helm test`, `helm upgrade` and `helm uninstall` walked in Helm's own order
(tests/chart/helm_order.py) for every supported values file: no pod ever needs an object that
does not exist yet, no hook outlives Helm's timeout, and uninstall leaves no secret behind."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.chart import CHART, CI_VALUES, load_values, rendered
from tests.chart.helm_order import Key, Walk
from tests.support.procs import ROOT

FILES = [p.name for p in CI_VALUES]
# `helm test --logs` reads the test pod's log after the run, so it is kept until the next run.
KEPT_FOR_LOGS = {("Pod", "dw-durable-writes-test")}


def prerequisites(values: dict[str, Any]) -> set[Key]:
    """Objects the values say the installer provides (README, Install on Kubernetes)."""
    found: set[Key] = set()
    secrets = values.get("secrets", {})
    if secrets.get("existingSecret"):
        found.add(("Secret", secrets["existingSecret"]))
    storage = values.get("storage", {})
    if storage.get("existingClaim") and storage.get("backend", "local") == "local":
        found.add(("PersistentVolumeClaim", storage["existingClaim"]))
    token = values.get("helmTest", {}).get("tokenSecret", {})
    if token.get("name"):
        found.add(("Secret", token["name"]))
    found |= {("Secret", s["name"]) for s in values.get("imagePullSecrets", [])}
    account = values.get("serviceAccount", {})
    if account.get("create") is False and account.get("name"):
        found.add(("ServiceAccount", account["name"]))
    ca = values.get("redis", {}).get("tls", {}).get("caSecret", {})
    if ca.get("name"):
        found.add(("Secret", ca["name"]))
    return found


@pytest.mark.parametrize("name", FILES)
def test_install_test_upgrade_test_uninstall_in_helms_order(name: str) -> None:
    docs = list(rendered(name))
    walk = Walk(docs)
    assert walk.install(), walk.problems
    assert walk.test()
    assert walk.upgrade(list(docs))
    assert walk.test()
    left = walk.uninstall()
    assert walk.problems == [], "\n".join([*walk.problems, "--- walk:", *walk.log])
    assert walk.external <= prerequisites(load_values(CHART / "ci" / name))
    assert set(left) <= KEPT_FOR_LOGS, left


@pytest.mark.parametrize("name", FILES)
def test_a_failed_migration_leaves_its_job_for_the_logs_and_no_secret(name: str) -> None:
    walk = Walk(list(rendered(name)))
    assert not walk.install(fail=("Job", "dw-durable-writes-migrate"))
    left = set(walk.existing)
    assert ("Job", "dw-durable-writes-migrate") in left
    assert not {k for k in left if k[0] in {"Secret", "ServiceAccount"}}, left
    assert walk.problems == []


def test_the_walk_sees_a_pre_install_hook_that_needs_an_ordinary_object() -> None:
    docs = list(rendered("minimal-values.yaml"))
    job = next(d for d in docs if d.kind == "Job")
    pod = job.body["spec"]["template"]["spec"]
    broken = {**job.body, "spec": {**job.body["spec"], "template": {
        **job.body["spec"]["template"],
        "spec": {**pod, "serviceAccountName": "dw-durable-writes"},
    }}}  # fmt: skip
    walk = Walk([d if d is not job else type(job)(job.template, broken) for d in docs])
    walk.install()
    assert any("needs ServiceAccount/dw-durable-writes" in p for p in walk.problems)


def test_the_readme_install_section_names_every_prerequisite() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Install on Kubernetes") : readme.index("## Settings")]
    # Every values key through which a pod may need an object the release does not create
    # (prerequisites() above), and the cluster's own prerequisites.
    for needed in (
        "secrets.existingSecret",
        "storage.existingClaim",
        "storage.persistence.create",
        "ReadWriteMany",
        "helmTest.tokenSecret",
        "redis.tls.caSecret",
        "imagePullSecrets",
        "serviceAccount.name",
        "monitoring.scrape",
        "KEDA",
        "kube-prometheus-stack",
        "### Check it after install",
    ):
        assert needed in section, needed
