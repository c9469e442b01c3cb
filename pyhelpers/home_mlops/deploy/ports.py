"""Ports of a deploy: is the public port ours to take, and a free private port for the rest.

Gateways listen with SO_REUSEPORT, and every container runs as the same user,
so the kernel would let two apps' gateways share one port and split its traffic
between two models. The labels of running containers are therefore the truth
about who holds a port; a plain bind test (no SO_REUSEPORT) catches everything else.
"""
from __future__ import annotations

import errno
import secrets
import socket
from dataclasses import dataclass

from home_mlops.deploy.docker_host import DockerHost
from home_mlops.deploy.specs import LABEL_APP, LABEL_BIND, LABEL_PORT, LABEL_ROLE, LABEL_RUN, LABEL_SLOT, LOOPBACK
from home_mlops.errors import DeployFailed

PRIVATE_PORTS = range(3000, 4000)  # model servers and candidate gateways, loopback only
_HOLDING = ("running", "restarting", "created", "paused")


@dataclass(frozen=True)
class PortHolder:
    app: str
    run_id: str
    container: str
    role: str
    slot: str
    bind: str


def port_bindable(port: int, host: str = LOOPBACK) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        return True
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            return False
        raise
    finally:
        sock.close()


def free_port() -> int:
    """A free loopback port from the kernel (tests and benchmarks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def holders(host: DockerHost, port: int) -> list[PortHolder]:
    """home-mlops containers that hold (or will hold again on restart) ``port``."""
    found = []
    for c in host.listed(f"{LABEL_PORT}={port}"):
        if c.get("State") not in _HOLDING:
            continue
        labels = c.get("Labels") or {}
        found.append(PortHolder(app=labels.get(LABEL_APP, "?"), run_id=labels.get(LABEL_RUN, "?"),
                                container=(c.get("Names") or ["?"])[0].lstrip("/"), role=labels.get(LABEL_ROLE, "?"),
                                slot=labels.get(LABEL_SLOT, ""), bind=labels.get(LABEL_BIND, LOOPBACK)))
    return found


def check_public_port(host: DockerHost, app: str, port: int, bind: str) -> None:
    """DeployFailed (6) unless ``port`` on ``bind`` is free or held only by this app's public front door."""
    held = holders(host, port)
    others = [h for h in held if h.app != app]
    if others:
        h = others[0]
        raise DeployFailed(
            f"port {port} is held by app {h.app!r} (run {h.run_id}, container {h.container}); nothing was started",
            f"a port of its own for app {app!r}",
            f"deploy {app!r} on another port (--port / HOME_MLOPS_PORT, or its port in jobs/projects.yaml), "
            f"or `home-mlops undeploy --app {h.app}` first",
        )
    if any(h.slot == "public" for h in held):
        return  # our own public front door (any serving mode): the new one joins it, then the old one goes
    if not port_bindable(port, bind):
        raise DeployFailed(
            f"port {port} on {bind} is in use by a process that is not a home-mlops gateway; nothing was started",
            f"port {port} free on {bind}, or held by the running gateway of app {app!r}",
            f"stop what listens there (`ss -ltnp 'sport = :{port}'`) or deploy on another port",
        )


def pick_private_port(host: DockerHost, public_port: int) -> int:
    """A loopback port in 3000-3999 no home-mlops container claims and nothing listens on.

    Call it under the host deploy lock and create the container before releasing it:
    the container's port label is what keeps a concurrent deploy off the same port.
    """
    claimed = set()
    for c in host.listed(LABEL_PORT):
        try:
            claimed.add(int((c.get("Labels") or {}).get(LABEL_PORT, "")))
        except ValueError:
            pass
    candidates = [p for p in PRIVATE_PORTS if p not in claimed and p != public_port]  # it may lie in the range
    secrets.SystemRandom().shuffle(candidates)
    for port in candidates:
        if port_bindable(port) and port_bindable(port, "0.0.0.0"):
            return port
    raise DeployFailed("no free port for the model server in 3000-3999", hint="stop unused services or containers")
