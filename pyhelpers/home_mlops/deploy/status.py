"""What is deployed on this host: one entry per app's public front door, read from Docker
(container labels, states, health checks, image digests) and a readiness probe through 127.0.0.1."""
from __future__ import annotations

from typing import Any

from home_mlops.deploy import docker_host
from home_mlops.deploy.docker_host import DockerHost
from home_mlops.deploy.probe import container_state
from home_mlops.readiness import answers
from home_mlops.deploy.specs import (
    LABEL_APP, LABEL_BIND, LABEL_DEPLOYED_AT, LABEL_EXPERIMENT, LABEL_MODEL, LABEL_PORT, LABEL_ROLE, LABEL_RUN,
    LABEL_SERVING, LABEL_SLOT, LABEL_UPSTREAM, LOOPBACK, public_url,
)


def _image_ref(host: DockerHost, container) -> tuple[str, str]:
    """(the image as deployed, its registry digest or else its local id)."""
    name = container.attrs.get("Config", {}).get("Image") or ""
    try:
        return name, host.image_digest(container.attrs.get("Image", ""))
    except Exception:  # noqa: BLE001 - removed image
        return name, ""


def _health(state_: str, health: str | None) -> str:
    return health or state_  # containers without a health check show their state


ROLES = ("gateway", "bento", "server")


def _container_fields(host: DockerHost, role: str, container, port: int | str | None) -> dict[str, Any]:
    """``<role>_image, _digest, _container, _state, _health, _ready`` of one container (None when absent)."""
    if container is None:
        return {f"{role}_{k}": None for k in ("image", "digest", "container", "state", "health")} | {
            f"{role}_ready": False}
    c_state, c_health = container_state(container)
    image, digest = _image_ref(host, container)
    return {
        f"{role}_image": image, f"{role}_digest": digest, f"{role}_container": container.name,
        f"{role}_state": c_state, f"{role}_health": _health(c_state, c_health),
        f"{role}_ready": c_state == "running" and answers(f"http://{LOOPBACK}:{port}/readyz"),
    }


def status(app: str | None = None, *, host: DockerHost | None = None) -> list[dict[str, Any]]:
    """One entry per public front door container (running or not) of ``app`` (or every app): the
    gateway (serving bento+gateway, with its model server), the bento (bento) or the server (fastapi).
    ``host``: this host's Docker Engine unless given."""
    host = host if host is not None else docker_host.connect()
    filters = [f"{LABEL_SLOT}=public"] + ([f"{LABEL_APP}={app}"] if app else [])
    out = []
    for front in host.containers(filters):
        labels = front.labels
        role = labels.get(LABEL_ROLE, "gateway")
        port = int(labels.get(LABEL_PORT) or 0)
        bind = labels.get(LABEL_BIND, LOOPBACK)
        entry: dict[str, Any] = {
            "app": labels.get(LABEL_APP, ""),
            "serving": labels.get(LABEL_SERVING) or "bento+gateway",  # deploys from before the modes
            "front_door": role,
            "url": public_url(bind, port),
            "local_url": f"http://{LOOPBACK}:{port}",
            "port": port,
            "bind": bind,
            "run_id": labels.get(LABEL_RUN),
            "experiment_id": labels.get(LABEL_EXPERIMENT),
            "model_id": labels.get(LABEL_MODEL),
            "deployed_at": labels.get(LABEL_DEPLOYED_AT) or front.attrs.get("Created", "")[:19],
        }
        for other in ROLES:
            entry.update(_container_fields(host, other, None, None))
        entry.update(_container_fields(host, role, front, port))
        roles = [role]
        if role == "gateway":  # the model server behind it
            try:
                bento = host.container(labels.get(LABEL_UPSTREAM, ""))
            except Exception:  # noqa: BLE001 - gone
                bento = None
            entry.update(_container_fields(host, "bento", bento, bento.labels.get(LABEL_PORT) if bento else None))
            roles.append("bento")
        entry["health"] = "/".join(entry[f"{r}_health"] or "missing" for r in roles)
        entry["ready"] = all(entry[f"{r}_ready"] for r in roles)
        out.append(entry)
    return sorted(out, key=lambda e: (e["app"], e[f"{e['front_door']}_container"]))
