"""skaffold.yaml is well-formed for its schema, and every file and value it names exists."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import yaml

from tests.chart.chart import SCHEMAS, find, load_values, render
from tests.support.procs import ROOT

SKAFFOLD = ROOT / "skaffold.yaml"


def _config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(SKAFFOLD.read_text())
    return config


def test_skaffold_yaml_validates_against_its_schema() -> None:
    config = _config()
    assert config["apiVersion"] == "skaffold/v4beta14"
    schema = json.loads((SCHEMAS / "skaffold/v4beta14.json").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(config)]
    assert errors == []
    broken = {**config, "deploy": {"helm": {"relases": []}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def _releases(config: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = list(config["deploy"]["helm"]["releases"])
    for profile in config.get("profiles", []):
        found += profile.get("deploy", {}).get("helm", {}).get("releases", [])
    return found


def test_every_file_skaffold_names_exists_and_every_values_file_renders() -> None:
    config = _config()
    artifacts = list(config["build"]["artifacts"])
    for profile in config["profiles"]:
        artifacts += profile.get("build", {}).get("artifacts", [])
        for path in profile.get("manifests", {}).get("rawYaml", []):
            assert (ROOT / path).is_file(), path
            assert all(d for d in yaml.safe_load_all((ROOT / path).read_text()))
    for artifact in artifacts:
        assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
    images = {a["image"] for a in artifacts}
    for release in _releases(config):
        assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
        assert set(release["setValueTemplates"]) == {"image.repository", "image.tag"}
        for path in release["valuesFiles"]:
            values = load_values(ROOT / path)
            docs = render(values)
            # The forwarded Services are the ones the release creates.
            for forward in config["portForward"]:
                service = find(
                    docs, "Service", forward["resourceName"].removeprefix("durable-writes")
                )
                assert forward["port"] in [p["port"] for p in service.body["spec"]["ports"]]
    # The stand-in image the dev manifests use is one skaffold builds.
    chatbot = yaml.safe_load_all((ROOT / "k8s/dev/chatbotmobile.yaml").read_text())
    used = {
        c["image"]
        for d in chatbot
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert used <= images


def test_the_readme_installs_with_a_values_file_the_tests_render() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install on Kubernetes", 1)[1].split("\n## ", 1)[0]
    # The install starts from the values file the tests render (copied, then edited).
    assert "cp charts/durable-writes/ci/minimal-values.yaml values.yaml" in section
    assert (ROOT / "charts/durable-writes/ci/minimal-values.yaml").is_file()
    assert "helm test durable-writes" in section and "helm rollback" in section
