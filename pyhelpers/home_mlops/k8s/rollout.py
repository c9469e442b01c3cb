"""Rollout decisions as plain functions over the `kubernetes` client's model objects.

No I/O here: apply.py reads the objects through the cluster adapter and asks these functions
whether a rollout is done, still going or failed, which revision to go back to and how.
The rules follow `kubectl rollout status` and `kubectl rollout undo`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes.client import V1Deployment, V1Pod, V1ReplicaSet

from home_mlops.deploy.specs import LABEL_RUN
from home_mlops.k8s.render import to_dict

REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
DONE, WAITING, FAILED = "done", "waiting", "failed"
# A container that waits for one of these will not become ready by waiting longer.
FATAL_WAITING = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                           "CreateContainerConfigError", "CreateContainerError"})


@dataclass(frozen=True)
class Progress:
    state: str  # done | waiting | failed
    message: str


def revision(obj: V1Deployment | V1ReplicaSet) -> int:
    """The revision number the Deployment controller wrote on the object (0 if none yet)."""
    value = ((obj.metadata.annotations if obj.metadata else None) or {}).get(REVISION, "")
    return int(value) if value.isdigit() else 0


def rollout_progress(dep: V1Deployment) -> Progress:
    """Where the Deployment's rollout is, as `kubectl rollout status` decides it."""
    name = dep.metadata.name
    status, spec = dep.status, dep.spec
    if status is None or (dep.metadata.generation or 0) > (status.observed_generation or 0):
        return Progress(WAITING, f"{name}: waiting for the controller to take the new spec")
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return Progress(FAILED, f"{name}: no progress within {spec.progress_deadline_seconds} s "
                                    f"(ProgressDeadlineExceeded: {condition.message or 'no message'})")
    wanted = spec.replicas if spec.replicas is not None else 1
    updated = status.updated_replicas or 0
    if updated < wanted:
        return Progress(WAITING, f"{name}: {updated} of {wanted} new pods created")
    total = status.replicas or 0
    if total > updated:
        return Progress(WAITING, f"{name}: {total - updated} old pods still terminating")
    available = status.available_replicas or 0
    if available < updated:
        return Progress(WAITING, f"{name}: {available} of {updated} new pods ready")
    return Progress(DONE, f"{name}: {available} of {wanted} pods ready")


def new_replica_set(dep: V1Deployment, replica_sets: list[V1ReplicaSet]) -> V1ReplicaSet | None:
    """The ReplicaSet of the Deployment's current revision."""
    current = revision(dep)
    return next((rs for rs in replica_sets if current and revision(rs) == current), None)


def pods_of(rs: V1ReplicaSet | None, pods: list[V1Pod]) -> list[V1Pod]:
    if rs is None:
        return []
    wanted = (rs.metadata.labels or {}).get(TEMPLATE_HASH)
    return [p for p in pods if wanted and (p.metadata.labels or {}).get(TEMPLATE_HASH) == wanted]


def pod_failure(pods: list[V1Pod]) -> str | None:
    """Why the new pods cannot become ready (an image that cannot be pulled, a crash loop), or None."""
    for pod in sorted(pods, key=lambda p: p.metadata.name or ""):
        for status in (pod.status.container_statuses if pod.status else None) or []:
            waiting = status.state.waiting if status.state else None
            if waiting is not None and waiting.reason in FATAL_WAITING:
                last = status.last_state.terminated if status.last_state else None
                why = f"; last exit {last.exit_code} ({last.reason})" if last is not None else ""
                return (f"pod {pod.metadata.name}: container {status.name} is in {waiting.reason}"
                        f"{why}: {(waiting.message or '').strip()[:300]}").rstrip(": ")
    return None


def rollback_target(dep: V1Deployment, replica_sets: list[V1ReplicaSet]) -> V1ReplicaSet | None:
    """The previous revision: the Deployment's ReplicaSet with the highest revision below the current one."""
    current = revision(dep)
    older = [rs for rs in replica_sets if 0 < revision(rs) < current]
    return max(older, key=revision, default=None)


def rollback_patch(rs: V1ReplicaSet) -> list[dict[str, Any]]:
    """A JSON patch that puts the ReplicaSet's pod template back into its Deployment (what `kubectl
    rollout undo` sends). The controller then scales that ReplicaSet up again: no new pods are built."""
    template = to_dict(rs.spec.template)
    labels = template.get("metadata", {}).get("labels") or {}
    labels.pop(TEMPLATE_HASH, None)  # the controller's, not the template's
    return [{"op": "replace", "path": "/spec/template", "value": template}]


def run_of(rs: V1ReplicaSet | None) -> str:
    """The run a ReplicaSet's pods serve (its labels are its pod template's)."""
    if rs is None or rs.metadata is None:
        return ""
    return (rs.metadata.labels or {}).get(LABEL_RUN, "")


def template_run(dep: V1Deployment | None) -> str:
    """The run a Deployment's pod template serves now (after a rollback its own labels still name the newer run)."""
    template = dep.spec.template if dep is not None and dep.spec is not None else None
    if template is None or template.metadata is None:
        return ""
    return (template.metadata.labels or {}).get(LABEL_RUN, "")
