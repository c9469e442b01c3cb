"""What is deployed on this host: one entry per app's public gateway, read from Docker
(container labels, states, health checks, image digests) and a readiness probe through 127.0.0.1."""
from __future__ import annotations

from typing import Any

from home_mlops.deploy.probe import answers, container_state
from home_mlops.deploy.specs import (
    LABEL_APP, LABEL_BIND, LABEL_DEPLOYED_AT, LABEL_EXPERIMENT, LABEL_MODEL, LABEL_PORT, LABEL_ROLE, LABEL_RUN,
    LABEL_SLOT, LABEL_UPSTREAM, LOOPBACK, public_url,
)
from home_mlops.platform.host import docker_client


def _image_ref(client, container) -> tuple[str, str]:
    """(the image as deployed, its registry digest or else its local id)."""
    name = container.attrs.get("Config", {}).get("Image") or ""
    try:
        image = client.images.get(container.attrs.get("Image", ""))
    except Exception:  # noqa: BLE001 - removed image
        return name, ""
    digests = image.attrs.get("RepoDigests") or []
    return name, (digests[0].split("@", 1)[1] if digests else image.id)


def _health(state_: str, health: str | None) -> str:
    return health or state_  # containers without a health check show their state


def status(app: str | None = None) -> list[dict[str, Any]]:
    """One entry per public gateway container (running or not) of ``app`` (or every app)."""
    client = docker_client()
    filters = [f"{LABEL_ROLE}=gateway", f"{LABEL_SLOT}=public"] + ([f"{LABEL_APP}={app}"] if app else [])
    out = []
    for gw in client.containers.list(all=True, filters={"label": filters}, ignore_removed=True):
        labels = gw.labels
        port = int(labels.get(LABEL_PORT) or 0)
        bind = labels.get(LABEL_BIND, LOOPBACK)
        gw_state, gw_health = container_state(gw)
        gw_image, gw_digest = _image_ref(client, gw)
        entry: dict[str, Any] = {
            "app": labels.get(LABEL_APP, ""),
            "url": public_url(bind, port),
            "local_url": f"http://{LOOPBACK}:{port}",
            "port": port,
            "bind": bind,
            "run_id": labels.get(LABEL_RUN),
            "experiment_id": labels.get(LABEL_EXPERIMENT),
            "model_id": labels.get(LABEL_MODEL),
            "deployed_at": labels.get(LABEL_DEPLOYED_AT) or gw.attrs.get("Created", "")[:19],
            "gateway_image": gw_image,
            "gateway_digest": gw_digest,
            "gateway_container": gw.name,
            "gateway_state": gw_state,
            "gateway_health": _health(gw_state, gw_health),
            "gateway_ready": gw_state == "running" and answers(f"http://{LOOPBACK}:{port}/readyz"),
            "bento_image": None, "bento_digest": None, "bento_container": None, "bento_state": None,
            "bento_health": None, "bento_ready": False,
        }
        try:
            bento = client.containers.get(labels.get(LABEL_UPSTREAM, ""))
        except Exception:  # noqa: BLE001 - gone
            bento = None
        if bento is not None:
            b_state, b_health = container_state(bento)
            b_image, b_digest = _image_ref(client, bento)
            entry.update(
                bento_image=b_image, bento_digest=b_digest, bento_container=bento.name, bento_state=b_state,
                bento_health=_health(b_state, b_health),
                bento_ready=b_state == "running" and answers(f"http://{LOOPBACK}:{bento.labels.get(LABEL_PORT)}/readyz"),
            )
        entry["health"] = f"{entry['gateway_health']}/{entry['bento_health'] or 'missing'}"
        entry["ready"] = bool(entry["gateway_ready"] and entry["bento_ready"])
        out.append(entry)
    return sorted(out, key=lambda e: (e["app"], e["gateway_container"]))
