"""One app release as Kubernetes objects, built with the `kubernetes` client's models.

Per role of the app's serving mode (docs/cli-contract.md, serving modes): a Deployment and a
Service; a PodDisruptionBudget per role; a HorizontalPodAutoscaler and an optional Ingress for
the front door; the Namespace. Nothing here talks to a cluster or reads the clock: the same
release and settings give byte-identical YAML (``to_yaml``), which ``write`` puts in one file
per object, named so that ``kubectl apply -f DIR`` applies them in order.

Names and labels Docker and Kubernetes share: the pods carry the same ``io.homemlops.*`` labels
as the Docker target's containers (``deploy/specs.py``), so one selector finds an app on both.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

# LABEL_SERVING is an annotation on Kubernetes: '+' is not allowed in a label value
from home_mlops.build.labels import LABEL_SERVING
from home_mlops.deploy.app_settings import FRONT_DOOR, SERVING_ROLES, DeploySettings, memory_bytes
from home_mlops.deploy.specs import (
    GATEWAY_CPUS, GATEWAY_MEMORY, LABEL_APP, LABEL_EXPERIMENT, LABEL_MODEL, LABEL_ROLE, LABEL_RUN, STOP_TIMEOUT,
    server_workers,
)
from home_mlops.errors import BadInput

SCHEMA_VERSION = "1.37"  # the Kubernetes release the manifests are validated against (tests, kubernetes-validate)
FIELD_MANAGER = "home-mlops"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_SELECTOR = f"{MANAGED_BY}={FIELD_MANAGER}"

CONTAINER_PORTS = {"bento": 3000, "gateway": 8000, "server": 8000}
FRONT_DOOR_PORT = 80  # the Service port of the front door (what an Ingress or the API server proxy calls)
PORT_NAME = "http"
READY_PATH, LIVE_PATH = "/readyz", "/healthz"
PROBE_PERIOD = 5
REVISION_HISTORY = 5  # old ReplicaSets kept: what `deploy --rollback` can go back to
HEADER = "# rendered by home-mlops k8s render: do not edit (re-render instead)\n"

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_DNS_1035 = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class RoleImage:
    """One image of the release: role, the reference it was built as, its registry digest and labels."""

    role: str  # bento | gateway | server
    ref: str  # repository:tag, as bento-build / fastapi-build named it
    digest: str  # sha256:..., from the build result or the registry
    labels: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def pinned(self) -> str:
        """repository:tag@digest: the tag for people, the digest for the kubelet."""
        return f"{self.ref}@{self.digest}"


@dataclass(frozen=True)
class ClusterRelease:
    """What one deploy to a cluster serves: the run, the serving mode and its images."""

    app: str
    experiment_id: str
    run_id: str
    model_id: str
    serving: str
    images: tuple[RoleImage, ...]
    smoke_payload: dict | None = field(default=None, compare=False)

    def image(self, role: str) -> RoleImage:
        for image in self.images:
            if image.role == role:
                return image
        raise BadInput(f"no {role} image for app {self.app!r} (serving {self.serving})",
                       f"images for the roles {', '.join(SERVING_ROLES[self.serving])}",
                       "build them first (bento-build / fastapi-build) or give their results with --from")

    @property
    def front_door(self) -> str:
        return FRONT_DOOR[self.serving]

    @property
    def roles(self) -> tuple[str, ...]:
        return SERVING_ROLES[self.serving]

    @property
    def tag(self) -> str:
        return self.images[0].ref.rsplit(":", 1)[-1] if self.images else ""


def object_name(app: str, role: str) -> str:
    """<app>-<role>: a Service name must be a DNS-1035 label (a letter first, at most 63 characters)."""
    name = f"{app}-{role}"
    if not _DNS_1035.fullmatch(name):
        raise BadInput(f"app {app!r} cannot be named on Kubernetes: {name!r} is not a DNS-1035 label",
                       "an app name that starts with a letter and leaves room for '-gateway' (at most 55 characters)",
                       "rename the app in jobs/projects.yaml (and its training folder)")
    return name


def selector_labels(app: str, role: str) -> dict[str, str]:
    """What a Deployment, its Service, PDB and HPA select on: fixed for the app's life (a selector is immutable)."""
    return {LABEL_APP: app, LABEL_ROLE: role}


def _label_safe(value: str) -> bool:
    return bool(value) and len(value) <= 63 and bool(_LABEL_VALUE.fullmatch(value))


def object_labels(release: ClusterRelease, role: str) -> dict[str, str]:
    labels = {
        **selector_labels(release.app, role),
        MANAGED_BY: FIELD_MANAGER,
        "app.kubernetes.io/name": release.app,
        "app.kubernetes.io/component": role,
    }
    identity = {LABEL_RUN: release.run_id, LABEL_EXPERIMENT: release.experiment_id, LABEL_MODEL: release.model_id,
                "app.kubernetes.io/version": release.tag}
    labels.update({k: v for k, v in identity.items() if _label_safe(v)})
    return labels


def image_annotations(release: ClusterRelease, image: RoleImage) -> dict[str, str]:
    """The image's labels (all of them: annotations take any value) plus the serving mode."""
    return {**image.labels, LABEL_SERVING: release.serving}


def _meta(name: str, settings: DeploySettings, labels: dict[str, str],
          annotations: dict[str, str] | None = None) -> k8s.V1ObjectMeta:
    return k8s.V1ObjectMeta(name=name, namespace=settings.namespace, labels=dict(labels),
                            annotations=dict(annotations) if annotations else None)


def quantity_cpu(cpus: float) -> str:
    return f"{max(1, round(cpus * 1000))}m"


def quantity_memory(docker_size: str) -> str:
    return f"{math.ceil(memory_bytes(docker_size) / 1024**2)}Mi"


def _resources(role: str, settings: DeploySettings) -> k8s.V1ResourceRequirements:
    """The model server (bento, server) gets the app's cpus/memory; the gateway only forwards: fixed and small."""
    if role == "gateway":
        cpu, memory = quantity_cpu(GATEWAY_CPUS), quantity_memory(GATEWAY_MEMORY)
    else:
        cpu, memory = quantity_cpu(settings.cpus), quantity_memory(settings.memory)
    # requests = limits: the HPA's utilization is relative to the request, and the pod's QoS is Guaranteed.
    return k8s.V1ResourceRequirements(requests={"cpu": cpu, "memory": memory}, limits={"cpu": cpu, "memory": memory})


def _env(role: str, release: ClusterRelease, settings: DeploySettings) -> list[k8s.V1EnvVar]:
    """The same variables the Docker target gives each role (deploy/specs.py), with cluster addresses."""
    port = str(CONTAINER_PORTS[role])
    identity = {"HOME_MLOPS_APP": release.app, "HOME_MLOPS_RUN_ID": release.run_id}
    if role == "bento":
        values = {"BENTOML_HOST": "0.0.0.0", "BENTOML_PORT": port, **identity,
                  "HOME_MLOPS_EXPERIMENT_ID": release.experiment_id, "HOME_MLOPS_MODEL_ID": release.model_id}
    else:
        values = {"HOME_MLOPS_GATEWAY_HOST": "0.0.0.0", "HOME_MLOPS_GATEWAY_PORT": port,
                  "HOME_MLOPS_GATEWAY_GRACEFUL_TIMEOUT": str(STOP_TIMEOUT - 2), **identity}
        if role == "gateway":
            upstream = object_name(release.app, "bento")
            values["HOME_MLOPS_UPSTREAM_URL"] = f"http://{upstream}:{CONTAINER_PORTS['bento']}"
        else:  # the standalone server: one worker per whole CPU, as on Docker
            values.update({"HOME_MLOPS_EXPERIMENT_ID": release.experiment_id, "HOME_MLOPS_MODEL_ID": release.model_id,
                           "HOME_MLOPS_GATEWAY_WORKERS": str(server_workers(settings.cpus))})
    return [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(values.items())]


def _probe(path: str, period: int, failures: int) -> k8s.V1Probe:
    return k8s.V1Probe(http_get=k8s.V1HTTPGetAction(path=path, port=PORT_NAME), period_seconds=period,
                       timeout_seconds=3, failure_threshold=failures)


def container(role: str, release: ClusterRelease, settings: DeploySettings) -> k8s.V1Container:
    """The role's container: image by digest, probes on /readyz and /healthz, resources, no privileges."""
    # The startup probe gives a slow model load the whole ready timeout before liveness may restart it.
    startup_failures = max(1, math.ceil(settings.ready_timeout / PROBE_PERIOD))
    return k8s.V1Container(
        name=role,
        image=release.image(role).pinned,
        image_pull_policy="IfNotPresent",
        ports=[k8s.V1ContainerPort(name=PORT_NAME, container_port=CONTAINER_PORTS[role], protocol="TCP")],
        env=_env(role, release, settings),
        resources=_resources(role, settings),
        startup_probe=_probe(LIVE_PATH, PROBE_PERIOD, startup_failures),
        readiness_probe=_probe(READY_PATH, PROBE_PERIOD, 3),
        liveness_probe=_probe(LIVE_PATH, 10, 3),
        security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"])),
    )


def pod_spec(role: str, release: ClusterRelease, settings: DeploySettings) -> k8s.V1PodSpec:
    secrets = [k8s.V1LocalObjectReference(name=settings.image_pull_secret)] if settings.image_pull_secret else None
    return k8s.V1PodSpec(
        containers=[container(role, release, settings)],
        image_pull_secrets=secrets,
        automount_service_account_token=False,  # the model needs no Kubernetes API
        enable_service_links=False,  # no Service-named variables (a Service called bentoml would set BENTOML_PORT)
        termination_grace_period_seconds=STOP_TIMEOUT,
        security_context=k8s.V1PodSecurityContext(seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault")),
    )


def deployment(role: str, release: ClusterRelease, settings: DeploySettings) -> k8s.V1Deployment:
    name = object_name(release.app, role)
    labels = object_labels(release, role)
    annotations = image_annotations(release, release.image(role))
    front = role == release.front_door
    return k8s.V1Deployment(
        api_version="apps/v1", kind="Deployment",
        metadata=_meta(name, settings, labels, annotations),
        spec=k8s.V1DeploymentSpec(
            # The front door's replica count belongs to its HPA: an apply that set it would undo every scale.
            replicas=None if front else settings.replicas,
            selector=k8s.V1LabelSelector(match_labels=selector_labels(release.app, role)),
            strategy=k8s.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=k8s.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0)),
            revision_history_limit=REVISION_HISTORY,
            # Past this the Deployment reports ProgressDeadlineExceeded: the rollout failed (apply.py rolls back).
            progress_deadline_seconds=max(int(math.ceil(settings.ready_timeout)), PROBE_PERIOD * 2),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=pod_spec(role, release, settings)),
        ),
    )


def service(role: str, release: ClusterRelease, settings: DeploySettings) -> k8s.V1Service:
    port = FRONT_DOOR_PORT if role == release.front_door else CONTAINER_PORTS[role]
    return k8s.V1Service(
        api_version="v1", kind="Service",
        metadata=_meta(object_name(release.app, role), settings, object_labels(release, role)),
        spec=k8s.V1ServiceSpec(
            type="ClusterIP", selector=selector_labels(release.app, role),
            ports=[k8s.V1ServicePort(name=PORT_NAME, port=port, target_port=PORT_NAME, protocol="TCP")]),
    )


def disruption_budget(role: str, release: ClusterRelease, settings: DeploySettings) -> k8s.V1PodDisruptionBudget:
    # maxUnavailable 1 (not minAvailable): a node drain may always proceed, one pod at a time.
    return k8s.V1PodDisruptionBudget(
        api_version="policy/v1", kind="PodDisruptionBudget",
        metadata=_meta(object_name(release.app, role), settings, object_labels(release, role)),
        spec=k8s.V1PodDisruptionBudgetSpec(
            max_unavailable=1, selector=k8s.V1LabelSelector(match_labels=selector_labels(release.app, role))),
    )


def autoscaler(release: ClusterRelease, settings: DeploySettings) -> k8s.V2HorizontalPodAutoscaler:
    role = release.front_door
    name = object_name(release.app, role)
    return k8s.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2", kind="HorizontalPodAutoscaler",
        metadata=_meta(name, settings, object_labels(release, role)),
        spec=k8s.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=k8s.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment", name=name),
            min_replicas=settings.replicas,
            max_replicas=settings.max_replicas,
            metrics=[k8s.V2MetricSpec(type="Resource", resource=k8s.V2ResourceMetricSource(
                name="cpu", target=k8s.V2MetricTarget(type="Utilization",
                                                      average_utilization=settings.cpu_target_percent)))]),
    )


def ingress(release: ClusterRelease, settings: DeploySettings) -> k8s.V1Ingress:
    role = release.front_door
    name = object_name(release.app, role)
    backend = k8s.V1IngressBackend(service=k8s.V1IngressServiceBackend(
        name=name, port=k8s.V1ServiceBackendPort(name=PORT_NAME)))
    return k8s.V1Ingress(
        api_version="networking.k8s.io/v1", kind="Ingress",
        metadata=_meta(name, settings, object_labels(release, role)),
        spec=k8s.V1IngressSpec(
            ingress_class_name=settings.ingress_class,
            rules=[k8s.V1IngressRule(host=settings.ingress_host, http=k8s.V1HTTPIngressRuleValue(
                paths=[k8s.V1HTTPIngressPath(path="/", path_type="Prefix", backend=backend)]))]),
    )


def namespace(settings: DeploySettings) -> k8s.V1Namespace:
    return k8s.V1Namespace(api_version="v1", kind="Namespace",
                           metadata=k8s.V1ObjectMeta(name=settings.namespace, labels={MANAGED_BY: FIELD_MANAGER}))


def check_release(release: ClusterRelease) -> None:
    """Digests must be digests: the kubelet pulls by them, and a tag alone could move under a running app."""
    if release.serving not in SERVING_ROLES:
        raise BadInput(f"serving mode {release.serving!r} has no Kubernetes layout",
                       f"one of {', '.join(SERVING_ROLES)}", "set serving in jobs/projects.yaml or --serving")
    for role in release.roles:
        image = release.image(role)
        if not DIGEST.fullmatch(image.digest or ""):
            raise BadInput(f"image {image.ref} has no registry digest ({image.digest!r})",
                           "sha256:<64 hex digits>, from the build result or the registry",
                           "push the image (bento-build / fastapi-build with --push) and render again")


@functools.lru_cache(maxsize=1)
def _serializer() -> k8s.ApiClient:
    return k8s.ApiClient()


def to_dict(obj: Any) -> dict[str, Any]:
    """A client model as the API's JSON (camelCase keys, unset fields left out)."""
    return _serializer().sanitize_for_serialization(obj)


def render(release: ClusterRelease, settings: DeploySettings, *, front_door: bool = True) -> list[dict[str, Any]]:
    """The release's objects in apply order: namespace, then per role (model server first) Service,
    Deployment, PodDisruptionBudget, then the front door's HPA and Ingress. ``front_door=False``
    leaves the front door's objects out (KServe serves it instead: kserve.py)."""
    check_release(release)
    objects: list[Any] = []
    if settings.namespace != "default":
        objects.append(namespace(settings))
    for role in release.roles:
        if role == release.front_door and not front_door:
            continue
        objects += [service(role, release, settings), deployment(role, release, settings),
                    disruption_budget(role, release, settings)]
    if front_door:
        objects.append(autoscaler(release, settings))
        if settings.ingress_host:
            objects.append(ingress(release, settings))
    return [to_dict(o) for o in objects]


def to_yaml(obj: dict[str, Any]) -> str:
    """One object as YAML: keys sorted, block style, no line folding: the same object, the same bytes."""
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=False, width=10_000)


def file_name(index: int, obj: dict[str, Any]) -> str:
    return f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def write(objects: list[dict[str, Any]], out: Path) -> list[Path]:
    """One file per object in ``out``. Files an earlier render wrote there (our header) are removed
    first, so `kubectl apply -f out` never applies an object this render no longer has."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in sorted(out.glob("*.yaml")):
            try:
                first = old.open(encoding="utf-8").readline()
            except (OSError, UnicodeDecodeError):
                continue
            if first == HEADER:
                old.unlink()
        written = []
        for index, obj in enumerate(objects):
            path = out / file_name(index, obj)
            path.write_text(HEADER + to_yaml(obj), encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise BadInput(f"cannot write the manifests to {str(out)[:200]!r}: {exc.strerror or type(exc).__name__}",
                       "--out a folder this user can create and write", "choose another --out") from None
    return written
