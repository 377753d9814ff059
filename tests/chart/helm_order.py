"""Helm's order of operations over a rendered release, walked without a cluster.

What Helm does (helm/helm `pkg/action` and `pkg/releaseutil`, v3.18 and v4):
- Objects annotated `helm.sh/hook` are hooks, kept out of the release's manifest. The hooks
  of one event run one at a time, sorted by `helm.sh/hook-weight`, then by kind in
  `InstallOrder`, then by name; each is created and, for a Job or a Pod, waited for until it
  completes. Before it is created, a same-named leftover is deleted when its policies say
  `before-hook-creation` (the default when none is given). Once every hook of the event
  succeeded, those with `hook-succeeded` are deleted (last first); when one fails, every hook
  of the event created so far that says `hook-failed` is deleted (helm/helm#30673).
- install: pre-install hooks, then the manifest's objects in `InstallOrder` (unknown kinds,
  such as custom resources, last by kind name), then post-install hooks. upgrade: the same
  with pre-/post-upgrade, objects of the old release that are gone deleted. uninstall:
  pre-delete hooks, the manifest's objects deleted in `UninstallOrder`, post-delete hooks.
  Hooks are not part of the manifest: uninstall never deletes them.

A pod is refused or never starts when its ServiceAccount, a ConfigMap, a Secret or a claim it
names is missing; a hook Job waits forever for it (Helm gives up after its timeout). The
walk records every such reference at the moment its object is created.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.chart.chart import Doc

# releaseutil.InstallOrder and UninstallOrder (kinds this chart does not use left out: an
# unknown kind sorts last, which is where Helm puts them too only if absent from its list).
INSTALL_ORDER = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList",
    "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController",
    "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
    "Ingress", "APIService",
]  # fmt: skip
UNINSTALL_ORDER = [
    "APIService", "Ingress", "Service", "CronJob", "Job", "StatefulSet",
    "HorizontalPodAutoscaler", "Deployment", "ReplicaSet", "ReplicationController", "Pod",
    "DaemonSet", "RoleBindingList", "RoleBinding", "RoleList", "Role", "ClusterRoleBindingList",
    "ClusterRoleBinding", "ClusterRoleList", "ClusterRole", "CustomResourceDefinition",
    "PersistentVolumeClaim", "PersistentVolume", "StorageClass", "ConfigMap", "Secret",
    "ServiceAccount", "PodDisruptionBudget", "PodSecurityPolicy", "LimitRange", "ResourceQuota",
    "NetworkPolicy", "Namespace",
]  # fmt: skip
# Helm's default --timeout for each hook it waits for.
HELM_DEFAULT_TIMEOUT_S = 300
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}

Key = tuple[str, str]  # (kind, name)


def key(doc: Doc) -> Key:
    """An object's identity in one namespace."""
    return doc.kind, doc.name


def _annotations(doc: Doc) -> dict[str, str]:
    found: dict[str, str] = doc.body["metadata"].get("annotations") or {}
    return found


def hook_events(doc: Doc) -> list[str]:
    """The events a hook runs at (empty: an ordinary object of the manifest)."""
    text = _annotations(doc).get("helm.sh/hook", "")
    return [e.strip() for e in text.split(",") if e.strip()]


def delete_policies(doc: Doc) -> set[str]:
    """A hook's deletion policies, with Helm's default."""
    text = _annotations(doc).get("helm.sh/hook-delete-policy", "")
    return {p.strip() for p in text.split(",") if p.strip()} or {"before-hook-creation"}


def _kind_rank(kind: str, order: list[str]) -> tuple[int, str]:
    return (order.index(kind), "") if kind in order else (len(order), kind)


def hook_order(hooks: Iterable[Doc]) -> list[Doc]:
    """Hooks of one event in the order Helm runs them (action.hookByWeight)."""

    def rank(doc: Doc) -> tuple[int, tuple[int, str], str]:
        weight = int(_annotations(doc).get("helm.sh/hook-weight", "0"))
        return weight, _kind_rank(doc.kind, INSTALL_ORDER), doc.name

    return sorted(hooks, key=rank)


def manifest_order(docs: Iterable[Doc], order: list[str]) -> list[Doc]:
    """Objects of the manifest in Helm's kind order (ties by template, as Helm's sorter)."""
    return sorted(docs, key=lambda d: (_kind_rank(d.kind, order), d.template))


def pod_spec(body: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec a workload creates pods from (None for other kinds)."""
    kind, spec = body["kind"], body.get("spec", {})
    if kind == "Pod":
        return spec  # type: ignore[no-any-return]
    if kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    if kind in WORKLOADS:
        return spec["template"]["spec"]  # type: ignore[no-any-return]
    return None


def references(body: dict[str, Any]) -> Iterator[Key]:
    """Objects a pod of this workload (or a KEDA object) needs to exist when it starts."""
    pod = pod_spec(body)
    if pod is not None:
        account = pod.get("serviceAccountName", "default")
        if account != "default":  # every namespace has it
            yield "ServiceAccount", account
        for secret in pod.get("imagePullSecrets", []):
            yield "Secret", secret["name"]
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            for source in c.get("envFrom", []):
                for ref, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if ref in source and not source[ref].get("optional"):
                        yield kind, source[ref]["name"]
            for var in c.get("env", []):
                found = var.get("valueFrom", {})
                for ref, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if ref in found and not found[ref].get("optional"):
                        yield kind, found[ref]["name"]
        for volume in pod.get("volumes", []):
            yield from _volume_references(volume)
    if body["kind"] == "TriggerAuthentication":
        for ref in body["spec"].get("secretTargetRef", []):
            yield "Secret", ref["name"]


def _volume_references(volume: dict[str, Any]) -> Iterator[Key]:
    if "configMap" in volume and not volume["configMap"].get("optional"):
        yield "ConfigMap", volume["configMap"]["name"]
    if "secret" in volume and not volume["secret"].get("optional"):
        yield "Secret", volume["secret"]["secretName"]
    if "persistentVolumeClaim" in volume:
        yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
    for source in volume.get("projected", {}).get("sources", []):
        yield from _volume_references(source)


@dataclass
class Walk:
    """The state of a namespace while Helm works a release into it, and what went wrong."""

    docs: list[Doc]
    timeout_s: int = HELM_DEFAULT_TIMEOUT_S
    existing: dict[Key, Doc] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # Referenced objects the release never creates: prerequisites of the installer.
    external: set[Key] = field(default_factory=set)
    log: list[str] = field(default_factory=list)

    @property
    def hooks(self) -> list[Doc]:
        return [d for d in self.docs if hook_events(d)]

    @property
    def manifest(self) -> list[Doc]:
        return [d for d in self.docs if not hook_events(d)]

    def _create(self, step: str, doc: Doc) -> None:
        rendered = {key(d) for d in self.docs}
        for ref in references(doc.body):
            if ref not in rendered:
                self.external.add(ref)
            elif ref not in self.existing:
                self.problems.append(
                    f"{step}: {doc.kind}/{doc.name} needs {ref[0]}/{ref[1]}, "
                    "which does not exist yet"
                )
        self.existing[key(doc)] = doc
        self.log.append(f"{step}: create {doc.kind}/{doc.name}")

    def _delete(self, step: str, doc: Doc) -> None:
        if self.existing.pop(key(doc), None) is not None:
            self.log.append(f"{step}: delete {doc.kind}/{doc.name}")

    def run_hooks(self, event: str, *, fail: Key | None = None) -> bool:
        """Run the hooks of `event`; `fail` is a hook that fails. True if all succeeded."""
        ran: list[Doc] = []
        for hook in hook_order(d for d in self.hooks if event in hook_events(d)):
            if "before-hook-creation" in delete_policies(hook):
                self._delete(event, hook)
            self._create(event, hook)
            ran.append(hook)
            deadline = hook.body.get("spec", {}).get("activeDeadlineSeconds")
            if hook.kind == "Job" and deadline and deadline >= self.timeout_s:
                self.problems.append(
                    f"{event}: Job/{hook.name} may run {deadline} s, as long as or longer "
                    f"than Helm waits for it ({self.timeout_s} s): Helm gives up first"
                )
            if key(hook) == fail:
                for done in reversed(ran):
                    if "hook-failed" in delete_policies(done):
                        self._delete(event, done)
                return False
        for done in reversed(ran):
            if "hook-succeeded" in delete_policies(done):
                self._delete(event, done)
        return True

    def _apply_manifest(self, step: str, previous: list[Doc]) -> None:
        wanted = {key(d) for d in self.manifest}
        for doc in manifest_order(self.manifest, INSTALL_ORDER):
            if key(doc) in self.existing:
                self.existing[key(doc)] = doc
            else:
                self._create(step, doc)
        for doc in manifest_order(previous, UNINSTALL_ORDER):
            if key(doc) not in wanted:
                self._delete(step, doc)

    def install(self, *, fail: Key | None = None) -> bool:
        """`helm install`; False if a hook failed (the release stops there)."""
        if not self.run_hooks("pre-install", fail=fail):
            return False
        self._apply_manifest("install", [])
        return self.run_hooks("post-install", fail=fail)

    def test(self) -> bool:
        """`helm test`."""
        return self.run_hooks("test")

    def upgrade(self, new_docs: list[Doc]) -> bool:
        """`helm upgrade` to `new_docs` (the namespace holds what the last release left)."""
        previous = self.manifest
        self.docs = new_docs
        if not self.run_hooks("pre-upgrade"):
            return False
        self._apply_manifest("upgrade", previous)
        return self.run_hooks("post-upgrade")

    def uninstall(self) -> list[Key]:
        """`helm uninstall`; what is left in the namespace afterwards."""
        self.run_hooks("pre-delete")
        for doc in manifest_order(self.manifest, UNINSTALL_ORDER):
            self._delete("uninstall", doc)
        self.run_hooks("post-delete")
        return sorted(self.existing)
