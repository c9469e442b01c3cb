"""A stand-in for the API server and the Deployment controller, made of the `kubernetes` client's own
model objects (V1Deployment, V1ReplicaSet, V1Pod), for testing apply.py's decisions.

Like the real controller: an apply that changes a Deployment's pod template makes a new revision
(a ReplicaSet with a pod-template-hash), an apply of a template an older ReplicaSet already has
reuses that ReplicaSet under a new revision number, and a rollback patch of the template is just
such a change. How a new revision's pods behave is the scenario the test picks:
  ok        every new pod becomes ready
  stuck     the Deployment reports ProgressDeadlineExceeded
  unready   pods run but never pass their readiness probe
  pull      the image cannot be pulled (ErrImagePull)
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from kubernetes import client as k8s

from home_mlops.k8s.rollout import REVISION, TEMPLATE_HASH

_API = k8s.ApiClient()


def model(data: dict, kind: str):
    """A dict as the API returns it -> the client's model object."""
    return _API._ApiClient__deserialize(data, kind)


class FakeCluster:
    def __init__(self, scenario: str = "ok", proxy: dict[str, tuple[int, str]] | None = None) -> None:
        self.scenario = scenario
        self.proxy_answers = proxy or {}
        self.objects: dict[tuple[str, str], dict] = {}
        self.deps: dict[str, k8s.V1Deployment] = {}
        self.rsets: dict[str, list[k8s.V1ReplicaSet]] = {}
        self.pod_list: dict[str, list[k8s.V1Pod]] = {}
        self.applied: list[dict] = []
        self.patches: list[tuple[str, list]] = []
        self.proxied: list[tuple[str, str, dict | None]] = []
        self.deleted: list[str] = []

    # --- the controller ------------------------------------------------------------------
    def _roll(self, name: str, manifest: dict, template: dict, scenario: str) -> None:
        template = json.loads(json.dumps(template))
        template.setdefault("metadata", {}).setdefault("labels", {}).pop(TEMPLATE_HASH, None)
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        rsets = self.rsets.setdefault(name, [])
        current = self.deps.get(name)
        top = max((int(rs.metadata.annotations[REVISION]) for rs in rsets), default=0)
        same = next((rs for rs in rsets if rs.metadata.labels[TEMPLATE_HASH] == digest), None)
        if current is not None and same is not None and current.metadata.annotations[REVISION] == same.metadata.annotations[REVISION]:
            revision = top  # nothing changed: no new revision
        else:
            revision = top + 1
            if same is not None:
                same.metadata.annotations[REVISION] = str(revision)
            else:
                labels = {**template["metadata"]["labels"], TEMPLATE_HASH: digest}
                rsets.append(model({"metadata": {"name": f"{name}-{digest}", "labels": labels,
                                                 "annotations": {REVISION: str(revision)}},
                                    "spec": {"selector": {"matchLabels": labels},
                                             "template": {**template, "metadata": {**template["metadata"], "labels": labels}}}},
                                   "V1ReplicaSet"))
        wanted = manifest["spec"].get("replicas", 1)
        status: dict[str, Any] = {"observedGeneration": 1, "replicas": wanted, "updatedReplicas": wanted,
                                  "availableReplicas": wanted, "readyReplicas": wanted}
        if scenario == "stuck":
            status.update(availableReplicas=0, conditions=[{"type": "Progressing", "status": "False",
                                                            "reason": "ProgressDeadlineExceeded",
                                                            "message": f"ReplicaSet {name} has timed out progressing."}])
        elif scenario in ("unready", "pull"):
            status.update(availableReplicas=0, replicas=wanted + 1)
        waiting = {"pull": {"reason": "ErrImagePull", "message": "pull access denied"}}.get(scenario)
        pod_status = {"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": scenario == "ok",
                                             "restartCount": 0,
                                             "state": {"waiting": waiting} if waiting else {"running": {}}}]}
        self.pod_list[name] = [model({"metadata": {"name": f"{name}-{digest}-x1", "labels": {
            **template["metadata"]["labels"], TEMPLATE_HASH: digest}}, "status": pod_status}, "V1Pod")]
        data = json.loads(json.dumps(manifest))
        data["metadata"].update(generation=1, annotations={**data["metadata"].get("annotations", {}),
                                                           REVISION: str(revision)})
        data["spec"]["template"] = template
        data["status"] = status
        self.deps[name] = model(data, "V1Deployment")

    def seed(self, manifest: dict) -> None:
        """A Deployment that was already there (a healthy earlier deploy)."""
        self._roll(manifest["metadata"]["name"], manifest, manifest["spec"]["template"], "ok")

    # --- Cluster -------------------------------------------------------------------------
    def apply(self, obj: dict) -> None:
        self.applied.append(obj)
        self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
        if obj["kind"] == "Deployment":
            self._roll(obj["metadata"]["name"], obj, obj["spec"]["template"], self.scenario)

    def namespace_exists(self, name: str) -> bool:
        return ("Namespace", name) in self.objects or bool(self.deps)

    def deployment(self, namespace: str, name: str):
        return self.deps.get(name)

    def deployments(self, namespace: str, selector: str):
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        return [d for d in self.deps.values() if wanted.items() <= (d.metadata.labels or {}).items()]

    def _name_for(self, selector: str) -> str:
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        return f"{wanted['io.homemlops.app']}-{wanted['io.homemlops.role']}"

    def replica_sets(self, namespace: str, selector: str):
        return list(self.rsets.get(self._name_for(selector), []))

    def pods(self, namespace: str, selector: str):
        return list(self.pod_list.get(self._name_for(selector), []))

    def patch_deployment(self, namespace: str, name: str, patch: list) -> None:
        self.patches.append((name, patch))
        (op,) = patch
        assert op["op"] == "replace" and op["path"] == "/spec/template"
        manifest = _API.sanitize_for_serialization(self.deps[name])
        self._roll(name, manifest, op["value"], "ok")  # the old template is known to work

    def delete_replica_set(self, namespace: str, name: str) -> None:
        for dep, rsets in self.rsets.items():
            self.rsets[dep] = [rs for rs in rsets if rs.metadata.name != name]
        self.deleted.append(f"replicaset/{name}")

    def proxy(self, namespace: str, service: str, path: str, payload: dict | None):
        self.proxied.append((service, path, payload))
        return self.proxy_answers.get(path, (200, '{"ok": true}'))

    def pod_log(self, namespace: str, pod: str, lines: int):
        return [f"log of {pod}", "password=hunter2 must not show"]

    def ingress_hosts(self, namespace: str, selector: str):
        return sorted(o["spec"]["rules"][0]["host"] for (kind, _), o in self.objects.items() if kind == "Ingress")

    def delete_app(self, namespace: str, selector: str):
        removed = [f"{kind.lower()}/{name}" for kind, name in sorted(self.objects)]
        self.deleted += removed
        self.objects.clear()
        self.deps.clear()
        return removed
