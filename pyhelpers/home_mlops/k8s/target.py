"""The Kubernetes target behind `deploy`, `deploy --rollback`, `undeploy` and `status` (`--target k8s`).

cli/build.py calls these when an app's target is k8s; each connects to the cluster of the
kubeconfig (or the pod's service account) unless given one, and returns the command's result.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from home_mlops import console
from home_mlops.deploy.app_settings import DeploySettings
from home_mlops.k8s import apply
from home_mlops.k8s.cluster import Cluster, connect
from home_mlops.params import JobParams
from home_mlops.records import ClusterDeployment
from home_mlops.resolve.resolver import ResolvedModel


def k8s_settings(app: str | None, target: str | None, namespace: str | None) -> DeploySettings | None:
    """The app's settings when its target is k8s (the option, HOME_MLOPS_TARGET or projects.yaml), else None:
    how `undeploy`, `status` and `deploy --rollback` pick their target."""
    from home_mlops.deploy.app_settings import resolve_settings

    settings = resolve_settings(app or "", {"target": target, "namespace": namespace})
    return settings if settings.target == "k8s" else None


def deploy_run(params: JobParams, resolve: Callable[[], ResolvedModel], settings: DeploySettings,
               cluster: Cluster | None = None) -> tuple[ResolvedModel, ClusterDeployment]:
    """Deploy the run's images (digests from the registry) in the app's serving mode. The cluster
    is asked first: no resolve or registry lookup when it cannot be reached (exit 7)."""
    from home_mlops.k8s.release import cluster_release

    cluster = cluster or connect()
    resolved = resolve()
    release = cluster_release(params, resolved, settings.serving)
    return resolved, apply.deploy(release, settings, cluster)


def rollback_app(app: str, settings: DeploySettings, cluster: Cluster | None = None) -> ClusterDeployment:
    return apply.rollback(app, settings, cluster or connect())


def undeploy_app(app: str, settings: DeploySettings, cluster: Cluster | None = None) -> dict[str, Any]:
    removed = apply.undeploy(app, settings, cluster or connect())
    message = (f"removed {len(removed)} objects of {app} from namespace {settings.namespace}" if removed
               else f"nothing of {app} was deployed in namespace {settings.namespace}")
    console.ok(message)
    return {"app": app, "target": "k8s", "namespace": settings.namespace, "removed": removed, "message": message}


def status(app: str | None, settings: DeploySettings, cluster: Cluster | None = None) -> dict[str, Any]:
    from home_mlops.k8s.status import status_lines, status_rows

    rows = status_rows(cluster or connect(), settings.namespace, app)
    for line in status_lines(rows):
        console.info(line)
    if not rows:
        console.info(f"nothing deployed in namespace {settings.namespace}")
    return {"target": "k8s", "namespace": settings.namespace, "deployments": rows}
