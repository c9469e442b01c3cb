"""A KServe InferenceService for clusters that run KServe: the front door image as a custom predictor.

The predictor's container is the very container the plain Deployment would run (render.container:
image by digest, probes on /readyz and /healthz, resources), so both layouts serve the same thing.
In bento+gateway mode the model server stays a plain Deployment + Service beside the
InferenceService (the gateway calls it by its Service name, as it does without KServe).

The `kubernetes` client has no model for KServe's resources, so the object is a dict; its pod
part is the client's models (render.pod_spec) and the tests check it against the core schema.
"""
from __future__ import annotations

from typing import Any

from home_mlops.deploy.app_settings import DeploySettings
from home_mlops.k8s.render import ClusterRelease, image_annotations, check_release, object_labels, object_name, pod_spec, render, to_dict

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"


def inference_service(release: ClusterRelease, settings: DeploySettings) -> dict[str, Any]:
    role = release.front_door
    pod = to_dict(pod_spec(role, release, settings))
    # KServe names the predictor's container kserve-container; the rest of the pod spec is inlined.
    pod["containers"][0]["name"] = "kserve-container"
    predictor: dict[str, Any] = {
        "minReplicas": settings.replicas,
        "maxReplicas": settings.max_replicas,
        **pod,
    }
    if settings.canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = settings.canary_traffic_percent
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": object_name(release.app, role),
            "namespace": settings.namespace,
            "labels": object_labels(release, role),
            "annotations": image_annotations(release, release.image(role)),
        },
        "spec": {"predictor": predictor},
    }


def render_kserve(release: ClusterRelease, settings: DeploySettings) -> list[dict[str, Any]]:
    """Namespace and the model server's plain objects (when the mode has one), then the InferenceService."""
    check_release(release)
    return [*render(release, settings, front_door=False), inference_service(release, settings)]
