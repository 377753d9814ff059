"""The Alertmanager configuration prometheus-operator builds from AlertmanagerConfig objects.

Written from the operator's documented behaviour and its `pkg/alertmanager/amcfg.go`
(v0.93, the version the chart targets), for Alertmanager 0.22 or newer (matchers syntax) and
the default `alertmanagerConfigMatcherStrategy: OnNamespace`:
- the top route of each AlertmanagerConfig becomes a child of the base configuration's root
  route, in front of the base's own children, with the matcher `namespace="<its namespace>"`
  added and `continue: true` (so an alert may match several of them);
- receiver names (in routes and receivers) become `<namespace>/<name>/<receiver>`;
- each inhibition rule gets `namespace="<its namespace>"` in its source and target matchers.
AlertmanagerConfigs are taken in the order of their `<namespace>/<name>` keys.
"""

from __future__ import annotations

import copy
from typing import Any

# kube-prometheus-stack's default base configuration (alertmanager.config of its values):
# everything goes to "null" unless a route of an AlertmanagerConfig takes it.
KUBE_PROMETHEUS_STACK_BASE: dict[str, Any] = {
    "global": {"resolve_timeout": "5m"},
    "route": {
        "group_by": ["namespace"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "12h",
        "receiver": "null",
        "routes": [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}],
    },
    "receivers": [{"name": "null"}],
    "inhibit_rules": [],
}
_ROUTE_KEYS = {
    "groupBy": "group_by",
    "groupWait": "group_wait",
    "groupInterval": "group_interval",
    "repeatInterval": "repeat_interval",
    "continue": "continue",
}


def _matcher(m: dict[str, str]) -> str:
    return f'{m["name"]}{m.get("matchType", "=")}"{m["value"]}"'


def _scoped(name: str, namespace: str, config: str) -> str:
    return f"{namespace}/{config}/{name}" if name else ""


def _route(spec: dict[str, Any], namespace: str, config: str) -> dict[str, Any]:
    route: dict[str, Any] = {new: spec[old] for old, new in _ROUTE_KEYS.items() if old in spec}
    if spec.get("receiver"):
        route["receiver"] = _scoped(spec["receiver"], namespace, config)
    if spec.get("matchers"):
        route["matchers"] = [_matcher(m) for m in spec["matchers"]]
    if spec.get("routes"):
        route["routes"] = [_route(child, namespace, config) for child in spec["routes"]]
    return route


def _receiver(spec: dict[str, Any], namespace: str, config: str) -> dict[str, Any]:
    unsupported = set(spec) - {"name", "webhookConfigs"}
    if unsupported:
        # Other kinds read Secrets from the cluster; the routing tests use webhooks.
        raise NotImplementedError(f"receiver kinds {sorted(unsupported)} are not converted here")
    hooks = [
        {"url": hook["url"], "send_resolved": hook.get("sendResolved", True)}
        for hook in spec.get("webhookConfigs", [])
    ]
    receiver: dict[str, Any] = {"name": _scoped(spec["name"], namespace, config)}
    if hooks:
        receiver["webhook_configs"] = hooks
    return receiver


def derived_config(
    amconfigs: list[dict[str, Any]], base: dict[str, Any] = KUBE_PROMETHEUS_STACK_BASE
) -> dict[str, Any]:
    """The configuration the operator writes for `base` plus these AlertmanagerConfig objects."""
    config = copy.deepcopy(base)
    enforced = []
    by_key = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in amconfigs}
    for key in sorted(by_key):
        obj = by_key[key]
        namespace, name, spec = obj["metadata"]["namespace"], obj["metadata"]["name"], obj["spec"]
        own = f'namespace="{namespace}"'
        for rule in spec.get("inhibitRules", []):
            source = [_matcher(m) for m in rule.get("sourceMatch", [])]
            target = [_matcher(m) for m in rule.get("targetMatch", [])]
            config.setdefault("inhibit_rules", []).append(
                {
                    "source_matchers": [*source, own] if own not in source else source,
                    "target_matchers": [*target, own] if own not in target else target,
                    "equal": rule.get("equal", []),
                }
            )
        if spec.get("route"):
            route = _route(spec["route"], namespace, name)
            route["matchers"] = [*route.get("matchers", []), own]
            route["continue"] = True
            enforced.append(route)
        config["receivers"] += [_receiver(r, namespace, name) for r in spec.get("receivers", [])]
    config["route"]["routes"] = enforced + config["route"].get("routes", [])
    return config
