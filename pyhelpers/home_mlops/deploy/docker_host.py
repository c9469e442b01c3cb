"""The one place deploy/ talks to the Docker Engine: the operations a deploy needs, by that name.

``connect()`` gives the real host (the docker SDK client of ``platform.host.docker_client``);
a test hands the deploy a fake with the same methods instead (tests/deploy/test_docker_host.py).
Containers stay the docker SDK's objects: deploy/ uses their ``name, id, status, labels, attrs``
and ``reload(), logs(), start(), stop(), remove()``, so a fake container offers those.
Errors are the SDK's own (``docker.errors.ImageNotFound``, ``NotFound``, ``APIError``): the
callers classify them as before.
"""
from __future__ import annotations

from typing import Any

from home_mlops.platform.host import docker_client

# Every deploy container: detached, host networking, rotated json logs.
RUN_OPTIONS: dict[str, Any] = {
    "detach": True,
    "network_mode": "host",
    "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
}


class DockerHost:
    """The Docker Engine of this host, as deploy/ uses it."""

    def __init__(self, client) -> None:
        self.client = client  # docker.DockerClient

    # ---- images

    def image_id(self, ref: str) -> str:
        """The local id of image ``ref`` (name or id); docker.errors.ImageNotFound when it is not here."""
        return self.client.images.get(ref).id

    def pull(self, repo: str, tag: str, auth: dict | None) -> str:
        """Pull ``repo:tag`` with ``auth`` (docker's auth_config); the pulled image's id."""
        return self.client.images.pull(repo, tag=tag, auth_config=auth).id

    def image_digest(self, image_id: str) -> str:
        """The registry digest of a local image, else its id; docker errors when it is gone."""
        image = self.client.images.get(image_id)
        digests = image.attrs.get("RepoDigests") or []
        return digests[0].split("@", 1)[1] if digests else image.id

    # ---- containers

    def run(self, spec: dict):
        """Create and start a container from a deploy spec (specs.py) with ``RUN_OPTIONS``; the container."""
        return self.client.containers.run(**RUN_OPTIONS, **spec)

    def containers(self, labels: list[str]) -> list:
        """Every container (running or not) carrying all ``labels`` (``key=value``)."""
        # ignore_removed: another deploy may remove a container between docker's list and inspect
        return self.client.containers.list(all=True, filters={"label": labels}, ignore_removed=True)

    def container(self, name: str):
        """The container named (or with id) ``name``; docker.errors.NotFound when there is none."""
        return self.client.containers.get(name)

    def listed(self, label: str) -> list[dict]:
        """Docker's container list itself for ``label`` (``key`` or ``key=value``): dicts with
        ``Names, State, Labels``, no inspect per container, so nothing to race with a removal."""
        return self.client.api.containers(all=True, filters={"label": label})


def connect() -> DockerHost:
    """This host's Docker Engine (Unavailable when the daemon does not answer)."""
    return DockerHost(docker_client())


def as_host(host_or_client) -> DockerHost:
    """A DockerHost for the docker SDK client some tests and benches still hold; a host as it is."""
    import docker

    return DockerHost(host_or_client) if isinstance(host_or_client, docker.DockerClient) else host_or_client
