"""What a deploy runs: the release record, container labels and specs, and the compose file of the pair.

Host networking for every container. The model server and candidate gateways bind
127.0.0.1; only the public gateway binds the deploy's ``bind`` address.
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any

from home_mlops.deploy.app_settings import DeploySettings
from home_mlops.errors import BadInput
from home_mlops.params import validate_app, validate_experiment_id, validate_registry, validate_run_id

LABEL_PREFIX = "io.homemlops."
LABEL_APP = LABEL_PREFIX + "app"
LABEL_ROLE = LABEL_PREFIX + "role"  # bento | gateway
LABEL_SLOT = LABEL_PREFIX + "slot"  # public | candidate (gateways only)
LABEL_RUN = LABEL_PREFIX + "run-id"
LABEL_EXPERIMENT = LABEL_PREFIX + "experiment-id"
LABEL_MODEL = LABEL_PREFIX + "model-id"
LABEL_PORT = LABEL_PREFIX + "port"
LABEL_BIND = LABEL_PREFIX + "bind"
LABEL_UPSTREAM = LABEL_PREFIX + "upstream"  # gateway -> its bento container's name
LABEL_DEPLOY_ID = LABEL_PREFIX + "deploy-id"
LABEL_DEPLOYED_AT = LABEL_PREFIX + "deployed-at"

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL for a gateway
DEPLOY_ID_ENV = "HOME_MLOPS_DEPLOY_ID"  # the gateway answers it in X-Home-Mlops-Deploy-Id
# The gateway only forwards; its limits stay fixed and small whatever the model server gets.
GATEWAY_MEMORY = "512m"
GATEWAY_CPUS = 1.0

_BENTO_HEALTH_CODE = (
    "import os,urllib.request;"
    "urllib.request.build_opener(urllib.request.ProxyHandler({})).open("
    "'http://127.0.0.1:%s/readyz' % os.environ.get('BENTOML_PORT','3000'), timeout=3)"
)
_GATEWAY_HEALTH_CODE = (
    "import os,urllib.request;"
    "urllib.request.build_opener(urllib.request.ProxyHandler({})).open("
    "'http://127.0.0.1:%s/healthz' % os.environ.get('HOME_MLOPS_GATEWAY_PORT','8000'), timeout=3)"
)


@dataclass(frozen=True)
class Release:
    """Which model a deploy serves: the run, its two images and the smoke-test payload."""

    app: str
    experiment_id: str
    run_id: str
    model_id: str
    bento_image: str
    gateway_image: str
    smoke_payload: dict | None = None

    def validate(self) -> "Release":
        validate_app(self.app)
        validate_experiment_id(self.experiment_id)
        validate_run_id(self.run_id)
        validate_image_ref(self.bento_image)
        validate_image_ref(self.gateway_image)
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

    role: str  # bento | gateway
    name: str
    port: int
    deploy_id: str
    deployed_at: str
    slot: str = ""  # public | candidate for gateways
    upstream_port: int = 0
    upstream_name: str = ""


def public_url(bind: str, port: int) -> str:
    """How other machines reach the app: this host's name, or the one address the gateway binds."""
    if bind == "0.0.0.0":
        return f"http://{socket.gethostname()}:{port}"
    return f"http://{bind}:{port}"


def _labels(release: Release, slot: Slot, bind: str) -> dict[str, str]:
    labels = {
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
    if slot.role == "gateway":
        labels.update({LABEL_SLOT: slot.slot, LABEL_UPSTREAM: slot.upstream_name})
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


def bento_spec(release: Release, slot: Slot, settings: DeploySettings) -> dict:
    return dict(
        image=release.bento_image,
        name=slot.name,
        environment={
            "BENTOML_HOST": LOOPBACK,
            "BENTOML_PORT": str(slot.port),
            "HOME_MLOPS_APP": release.app,
            "HOME_MLOPS_RUN_ID": release.run_id,
            "HOME_MLOPS_EXPERIMENT_ID": release.experiment_id,
            "HOME_MLOPS_MODEL_ID": release.model_id or "",
        },
        labels=_labels(release, slot, LOOPBACK),
        mem_limit=settings.memory,
        nano_cpus=int(settings.cpus * 1e9),
        healthcheck=_healthcheck(_BENTO_HEALTH_CODE, 60),
        restart_policy={"Name": "unless-stopped"},
    )


def gateway_spec(release: Release, slot: Slot, settings: DeploySettings) -> dict:
    """A gateway: the public one binds ``settings.bind``, a candidate binds loopback."""
    bind = settings.bind if slot.slot == "public" else LOOPBACK
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
        labels=_labels(release, slot, bind),
        mem_limit=GATEWAY_MEMORY,
        nano_cpus=int(GATEWAY_CPUS * 1e9),
        healthcheck=_healthcheck(_GATEWAY_HEALTH_CODE, 20),
        restart_policy={"Name": "unless-stopped"} if slot.slot == "public" else {"Name": "no"},
        stop_signal="SIGTERM",
    )


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


def compose_services(bento_name: str, bento: dict, gateway_name: str, gateway: dict) -> dict:
    """The running pair as docker-compose services (the gateway waits for a healthy model server)."""
    gw = _service(gateway_name, gateway)
    gw["depends_on"] = {"bento": {"condition": "service_healthy"}}
    return {"bento": _service(bento_name, bento), "gateway": gw}
