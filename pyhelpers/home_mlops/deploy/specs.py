"""What a deploy runs: the release record, container labels and specs, and the compose file.

The containers depend on the serving mode (``SERVING_ROLES``): ``bento+gateway`` runs a
BentoML model server behind a FastAPI gateway, ``bento`` the BentoML server alone,
``fastapi`` the standalone FastAPI model server. The mode's front door (``FRONT_DOOR``)
is the one container that binds the app's public port (slot ``public``); a *candidate*
of it on a loopback port is smoke-tested first. Host networking for every container;
everything but the public front door binds 127.0.0.1.
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any

# The label keys are declared once in build/labels.py (the images carry the same ones); deploy/,
# status and k8s read the container keys from here too.
from home_mlops.build.labels import (  # noqa: F401 - re-exported
    LABEL_APP, LABEL_BIND, LABEL_DEPLOY_ID, LABEL_DEPLOYED_AT, LABEL_EXPERIMENT, LABEL_MODEL, LABEL_PORT,
    LABEL_PREFIX, LABEL_ROLE, LABEL_RUN, LABEL_SERVING, LABEL_SLOT, LABEL_UPSTREAM,
)
from home_mlops.deploy.app_settings import FRONT_DOOR, SERVING_ROLES, DeploySettings
from home_mlops.errors import BadInput
from home_mlops.params import validate_app, validate_experiment_id, validate_registry, validate_run_id

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL for a gateway
DEPLOY_ID_ENV = "HOME_MLOPS_DEPLOY_ID"  # the gateway answers it in X-Home-Mlops-Deploy-Id
# The gateway only forwards; its limits stay fixed and small whatever the model server gets.
GATEWAY_MEMORY = "512m"
GATEWAY_CPUS = 1.0


def _health_code(path: str, port_env: str, default_port: int) -> str:
    """The container's own health check: a GET of ``path`` on its port (from ``port_env``) through
    127.0.0.1, no proxy (the image's environment may name one), in the image's python3."""
    return ("import os,urllib.request;"
            "urllib.request.build_opener(urllib.request.ProxyHandler({})).open("
            f"'http://127.0.0.1:%s{path}' % os.environ.get('{port_env}','{default_port}'), timeout=3)")


_BENTO_HEALTH_CODE = _health_code("/readyz", "BENTOML_PORT", 3000)
_SERVER_HEALTH_CODE = _health_code("/readyz", "HOME_MLOPS_GATEWAY_PORT", 8000)
_GATEWAY_HEALTH_CODE = _health_code("/healthz", "HOME_MLOPS_GATEWAY_PORT", 8000)


@dataclass(frozen=True)
class Release:
    """Which model a deploy serves: the run, its images (those its serving mode uses; the others
    may be empty) and the smoke-test payload (MLflow scoring JSON)."""

    app: str
    experiment_id: str
    run_id: str
    model_id: str
    bento_image: str
    gateway_image: str
    smoke_payload: dict | None = None
    server_image: str = ""

    def image(self, role: str) -> str:
        return {"bento": self.bento_image, "gateway": self.gateway_image, "server": self.server_image}[role]

    def validate(self, serving: str = "bento+gateway") -> "Release":
        validate_app(self.app)
        validate_experiment_id(self.experiment_id)
        validate_run_id(self.run_id)
        for role in SERVING_ROLES[serving]:
            if not self.image(role):
                raise BadInput(f"no {role} image to deploy app {self.app!r} in serving mode {serving}",
                               f"the {' and '.join(SERVING_ROLES[serving])} image(s) of the run",
                               f"give --{role}-image, or build the run's images for serving {serving}")
            validate_image_ref(self.image(role))
        return self


_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def validate_image_ref(ref: str) -> str:
    """``repository[:tag]`` in Docker's grammar (no digest form: deploys name tags)."""
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    try:
        validate_registry(repo)
    except BadInput:
        repo = ""
    if not repo or (tag and not _TAG.fullmatch(tag)):
        raise BadInput(f"image {ref[:120]!r} is not an image reference",
                       "repository[:tag], e.g. 127.0.0.1:5000/home-mlops/my-app-bento:0123abcd",
                       "give the image as `home-mlops bento-build` / `fastapi-build` printed it")
    return ref


@dataclass(frozen=True)
class Slot:
    """One container of the pair: its role, name, port and (gateways) where it forwards to."""

    role: str  # bento | gateway | server
    name: str
    port: int
    deploy_id: str
    deployed_at: str
    slot: str = ""  # public | candidate for the front door, empty for a model server behind a gateway
    upstream_port: int = 0
    upstream_name: str = ""


def public_url(bind: str, port: int) -> str:
    """How other machines reach the app: this host's name, or the one address the gateway binds."""
    if bind == "0.0.0.0":
        return f"http://{socket.gethostname()}:{port}"
    return f"http://{bind}:{port}"


def _labels(release: Release, slot: Slot, bind: str, serving: str) -> dict[str, str]:
    labels = {
        LABEL_SERVING: serving,
        LABEL_APP: release.app,
        LABEL_ROLE: slot.role,
        LABEL_RUN: release.run_id,
        LABEL_EXPERIMENT: release.experiment_id,
        LABEL_MODEL: release.model_id or "",
        LABEL_PORT: str(slot.port),
        LABEL_BIND: bind,
        LABEL_DEPLOY_ID: slot.deploy_id,
        LABEL_DEPLOYED_AT: slot.deployed_at,
    }
    if slot.slot:
        labels[LABEL_SLOT] = slot.slot
    if slot.role == "gateway":
        labels[LABEL_UPSTREAM] = slot.upstream_name
    return labels


def _healthcheck(code: str, start_period: int) -> dict:
    second = 1_000_000_000
    return {
        "test": ["CMD", "python3", "-c", code],
        "interval": 5 * second,
        "timeout": 3 * second,
        "retries": 3,
        "start_period": start_period * second,
    }


def bind_of(slot: Slot, settings: DeploySettings) -> str:
    """The public front door binds the deploy's address; everything else loopback."""
    return settings.bind if slot.slot == "public" else LOOPBACK


def _restart(slot: Slot) -> dict:
    return {"Name": "no"} if slot.slot == "candidate" else {"Name": "unless-stopped"}


def bento_spec(release: Release, slot: Slot, settings: DeploySettings) -> dict:
    """The BentoML model server: behind a gateway, or the front door itself (serving mode bento)."""
    bind = bind_of(slot, settings)
    return dict(
        image=release.bento_image,
        name=slot.name,
        environment={
            "BENTOML_HOST": bind,
            "BENTOML_PORT": str(slot.port),
            "HOME_MLOPS_APP": release.app,
            "HOME_MLOPS_RUN_ID": release.run_id,
            "HOME_MLOPS_EXPERIMENT_ID": release.experiment_id,
            "HOME_MLOPS_MODEL_ID": release.model_id or "",
        },
        labels=_labels(release, slot, bind, settings.serving),
        mem_limit=settings.memory,
        nano_cpus=int(settings.cpus * 1e9),
        healthcheck=_healthcheck(_BENTO_HEALTH_CODE, 60),
        restart_policy=_restart(slot),
        stop_signal="SIGTERM",
    )


def gateway_spec(release: Release, slot: Slot, settings: DeploySettings) -> dict:
    """A gateway: the public one binds ``settings.bind``, a candidate binds loopback."""
    bind = bind_of(slot, settings)
    return dict(
        image=release.gateway_image,
        name=slot.name,
        environment={
            "HOME_MLOPS_UPSTREAM_URL": f"http://{LOOPBACK}:{slot.upstream_port}",
            "HOME_MLOPS_GATEWAY_HOST": bind,
            "HOME_MLOPS_GATEWAY_PORT": str(slot.port),
            "HOME_MLOPS_GATEWAY_GRACEFUL_TIMEOUT": str(STOP_TIMEOUT - 2),
            "HOME_MLOPS_APP": release.app,
            "HOME_MLOPS_RUN_ID": release.run_id,
            DEPLOY_ID_ENV: slot.deploy_id,
        },
        labels=_labels(release, slot, bind, settings.serving),
        mem_limit=GATEWAY_MEMORY,
        nano_cpus=int(GATEWAY_CPUS * 1e9),
        healthcheck=_healthcheck(_GATEWAY_HEALTH_CODE, 20),
        restart_policy=_restart(slot),
        stop_signal="SIGTERM",
    )


def server_workers(cpus: float) -> int:
    """Worker processes of the standalone server: one per whole CPU the app gets (at least one);
    each runs the model single-threaded, so the processes are the parallelism."""
    return max(1, int(cpus))


def server_spec(release: Release, slot: Slot, settings: DeploySettings) -> dict:
    """The standalone FastAPI model server (serving mode fastapi): the model in process, the app's
    CPUs and memory; ready (``/readyz``) once the model is loaded."""
    bind = bind_of(slot, settings)
    return dict(
        image=release.server_image,
        name=slot.name,
        environment={
            "HOME_MLOPS_GATEWAY_HOST": bind,
            "HOME_MLOPS_GATEWAY_PORT": str(slot.port),
            "HOME_MLOPS_GATEWAY_WORKERS": str(server_workers(settings.cpus)),
            "HOME_MLOPS_GATEWAY_GRACEFUL_TIMEOUT": str(STOP_TIMEOUT - 2),
            "HOME_MLOPS_APP": release.app,
            "HOME_MLOPS_RUN_ID": release.run_id,
            "HOME_MLOPS_EXPERIMENT_ID": release.experiment_id,
            "HOME_MLOPS_MODEL_ID": release.model_id or "",
            DEPLOY_ID_ENV: slot.deploy_id,
        },
        labels=_labels(release, slot, bind, settings.serving),
        mem_limit=settings.memory,
        nano_cpus=int(settings.cpus * 1e9),
        healthcheck=_healthcheck(_SERVER_HEALTH_CODE, 60),
        restart_policy=_restart(slot),
        stop_signal="SIGTERM",
    )


SPECS = {"bento": bento_spec, "gateway": gateway_spec, "server": server_spec}


def front_door(settings: DeploySettings) -> str:
    return FRONT_DOOR[settings.serving]


def _service(container_name: str, spec: dict) -> dict[str, Any]:
    hc = spec["healthcheck"]
    return {
        "image": spec["image"],
        "container_name": container_name,
        "network_mode": "host",
        "restart": spec["restart_policy"]["Name"],
        "environment": dict(spec["environment"]),
        "labels": dict(spec["labels"]),
        "mem_limit": spec["mem_limit"],
        "cpus": spec["nano_cpus"] / 1e9,
        "stop_grace_period": f"{STOP_TIMEOUT}s",
        "healthcheck": {
            "test": hc["test"],
            "interval": f"{hc['interval'] // 1_000_000_000}s",
            "timeout": f"{hc['timeout'] // 1_000_000_000}s",
            "retries": hc["retries"],
            "start_period": f"{hc['start_period'] // 1_000_000_000}s",
        },
    }


def compose_services(containers: dict[str, tuple[str, dict]]) -> dict:
    """The running containers (role -> (name, spec)) as docker-compose services; a gateway
    waits for a healthy model server."""
    services = {role: _service(name, spec) for role, (name, spec) in containers.items()}
    if "gateway" in services and "bento" in services:
        services["gateway"]["depends_on"] = {"bento": {"condition": "service_healthy"}}
    return services
