"""`status --target k8s`: what home-mlops runs in the namespace, read from the Deployments themselves."""
from __future__ import annotations

from typing import Any

from kubernetes.client import V1Deployment

from home_mlops import output
from home_mlops.deploy.specs import LABEL_EXPERIMENT, LABEL_MODEL, LABEL_ROLE
from home_mlops.k8s import rollout
from home_mlops.k8s.apply import app_selector
from home_mlops.k8s.cluster import Cluster
from home_mlops.k8s.render import FRONT_DOOR, LABEL_APP, LABEL_SERVING, MANAGED_SELECTOR

COLUMNS = ("app", "url", "namespace", "serving", "run", "model id", "ready")


def _template_labels(dep: V1Deployment) -> dict[str, str]:
    template = dep.spec.template if dep.spec else None
    return dict((template.metadata.labels if template and template.metadata else None) or {})


def _role(dep: V1Deployment) -> dict[str, Any]:
    status, wanted = dep.status, dep.spec.replicas if dep.spec and dep.spec.replicas is not None else 1
    available = (status.available_replicas or 0) if status else 0
    updated = (status.updated_replicas or 0) if status else 0
    progress = rollout.rollout_progress(dep)
    containers = dep.spec.template.spec.containers if dep.spec and dep.spec.template.spec else []
    return {
        "deployment": dep.metadata.name,
        "image": containers[0].image if containers else "",
        "replicas": wanted, "available": available, "updated": updated,
        "revision": rollout.revision(dep), "run_id": rollout.template_run(dep),
        "ready": progress.state == rollout.DONE, "rollout": progress.message,
    }


def status_rows(cluster: Cluster, namespace: str, app: str | None = None) -> list[dict[str, Any]]:
    """One row per app: its serving mode, run, model, URL and each role's image, replicas and revision."""
    deps = cluster.deployments(namespace, app_selector(app) if app else MANAGED_SELECTOR)
    by_app: dict[str, list[V1Deployment]] = {}
    for dep in deps:
        by_app.setdefault((dep.metadata.labels or {}).get(LABEL_APP, ""), []).append(dep)
    rows = []
    for name in sorted(n for n in by_app if n):
        group = sorted(by_app[name], key=lambda d: d.metadata.name)
        roles = {(d.metadata.labels or {}).get(LABEL_ROLE, d.metadata.name): _role(d) for d in group}
        serving = (group[0].metadata.annotations or {}).get(LABEL_SERVING, "")
        front = FRONT_DOOR.get(serving, next(iter(roles)))
        front_dep = next((d for d in group if (d.metadata.labels or {}).get(LABEL_ROLE) == front), group[0])
        labels = _template_labels(front_dep)
        hosts = cluster.ingress_hosts(namespace, app_selector(name))
        url = f"http://{hosts[0]}" if hosts else f"http://{front_dep.metadata.name}.{namespace}.svc.cluster.local"
        rows.append({
            "app": name, "target": "k8s", "namespace": namespace, "serving": serving, "url": url,
            "run_id": rollout.template_run(front_dep), "experiment_id": labels.get(LABEL_EXPERIMENT, ""),
            "model_id": labels.get(LABEL_MODEL, ""), "ready": all(r["ready"] for r in roles.values()),
            "roles": roles,
        })
    return rows


def status_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Aligned plain lines (Jenkins logs have no width), each role's image and rollout under its app."""
    cells = [[str(c) for c in (r["app"], r["url"], r["namespace"], r["serving"] or "-", r["run_id"] or "-",
                               r["model_id"] or "-", "yes" if r["ready"] else "no")] for r in rows]
    header, *row_lines = output.aligned(COLUMNS, cells)
    lines = [header]
    for row, line in zip(rows, row_lines):
        lines.append(line)
        for role, info in row["roles"].items():
            lines.append(f"    {role} image: {info['image'] or '-'} ({info['available']}/{info['replicas']} ready, "
                         f"revision {info['revision']})")
    return lines
