"""The front door's runtime knobs, read once from the environment when the app is built.

The gateway image has no home_mlops package (``home_mlops/env.py`` is not there), so
this module reads its own ``HOME_MLOPS_*`` names; ``env.py`` declares the same names
for the docs table. A bad value is a ValueError naming the variable: ``python -m
gateway`` prints it and exits 2 before it binds the port.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

ENV_UPSTREAM_URL = "HOME_MLOPS_UPSTREAM_URL"
ENV_UPSTREAM_TIMEOUT = "HOME_MLOPS_UPSTREAM_TIMEOUT"
ENV_UPSTREAM_CONNECT_TIMEOUT = "HOME_MLOPS_UPSTREAM_CONNECT_TIMEOUT"
ENV_UPSTREAM_MAX_CONNECTIONS = "HOME_MLOPS_UPSTREAM_MAX_CONNECTIONS"
ENV_UPSTREAM_KEEPALIVE = "HOME_MLOPS_UPSTREAM_KEEPALIVE_SECONDS"
ENV_MAX_BODY_BYTES = "HOME_MLOPS_MAX_BODY_BYTES"
ENV_MAX_ROWS = "HOME_MLOPS_MAX_ROWS"
ENV_READY_TIMEOUT = "HOME_MLOPS_READY_TIMEOUT"
ENV_MAX_DEPTH = "HOME_MLOPS_MAX_DEPTH"
ENV_MAX_IN_FLIGHT = "HOME_MLOPS_MAX_IN_FLIGHT"
ENV_MAX_QUEUE = "HOME_MLOPS_MAX_QUEUE"
ENV_QUEUE_TIMEOUT = "HOME_MLOPS_QUEUE_TIMEOUT"
#: set by the deployer on each gateway container; echoed on every response (contract 5)
ENV_DEPLOY_ID = "HOME_MLOPS_DEPLOY_ID"
DEPLOY_ID_HEADER = "X-Home-Mlops-Deploy-Id"

DEFAULT_UPSTREAM_URL = "http://127.0.0.1:3000"


def _raw(name: str) -> str:
    return os.environ.get(name, "").strip()


def _env_float(name: str, default: float) -> float:
    raw = _raw(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def _env_int(name: str, default: int) -> int:
    raw = _raw(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


def _env_deploy_id() -> str | None:
    raw = _raw(ENV_DEPLOY_ID)
    if not raw:
        return None
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", raw):  # it goes into a response header as is
        raise ValueError(f"{ENV_DEPLOY_ID}={raw[:40]!r} should be 1-128 letters, digits, '.', '_', ':' or '-'")
    return raw


@dataclass(frozen=True)
class Settings:
    """Runtime knobs, read from the environment (see the ENV_* names)."""

    upstream_url: str = DEFAULT_UPSTREAM_URL
    timeout: float = 10.0
    connect_timeout: float = 2.0
    ready_timeout: float = 2.0
    max_body_bytes: int = 1024 * 1024
    max_rows: int = 10_000
    #: how deep JSON may nest; the deepest MLflow envelope needs 3 ({"dataframe_split": {"data": [[...]]}})
    max_depth: int = 32
    deploy_id: str | None = None
    max_connections: int = 100
    keepalive_seconds: float = 4.0  # below uvicorn's default 5 s keep-alive upstream
    #: predictions running at once; more wait in a queue (at most max_queue, at most queue_timeout
    #: seconds) and past either get a quick 503 + Retry-After instead of a client time-out
    max_in_flight: int = 32
    max_queue: int = 128
    queue_timeout: float = 1.0

    @classmethod
    def from_env(cls, upstream_url: str | None = None) -> "Settings":
        timeout = _env_float(ENV_UPSTREAM_TIMEOUT, 10.0)
        return cls(
            upstream_url=(upstream_url or _raw(ENV_UPSTREAM_URL) or DEFAULT_UPSTREAM_URL).rstrip("/"),
            timeout=timeout,
            connect_timeout=_env_float(ENV_UPSTREAM_CONNECT_TIMEOUT, min(timeout, 2.0)),
            ready_timeout=_env_float(ENV_READY_TIMEOUT, min(timeout, 2.0)),
            max_body_bytes=_env_int(ENV_MAX_BODY_BYTES, 1024 * 1024),
            max_rows=_env_int(ENV_MAX_ROWS, 10_000),
            max_depth=_env_int(ENV_MAX_DEPTH, 32),
            deploy_id=_env_deploy_id(),
            max_connections=_env_int(ENV_UPSTREAM_MAX_CONNECTIONS, 100),
            keepalive_seconds=_env_float(ENV_UPSTREAM_KEEPALIVE, 4.0),
            max_in_flight=_env_int(ENV_MAX_IN_FLIGHT, 32),
            max_queue=_env_int(ENV_MAX_QUEUE, 128),
            queue_timeout=_env_float(ENV_QUEUE_TIMEOUT, 1.0),
        )
