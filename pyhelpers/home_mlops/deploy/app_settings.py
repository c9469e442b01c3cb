"""Per-app deploy settings: jobs/projects.yaml (plus jobs/defaults.yaml), CLI options, built-in defaults.

One place decides what a deploy of an app uses, in this order (first set wins):
CLI option > its environment variable (typer reads both) > the app's entry in
jobs/projects.yaml > the defaults in jobs/defaults.yaml > the built-in defaults below.

jobs/projects.yaml is JJB's per-value form (the old plain list of names is still read):

    - project:
        name: home-mlops-apps
        app:
          - tabular-iris-multi-classifier:
              port: 8000
          - tabular-iris-lightgbm
"""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from home_mlops.errors import BadInput
from home_mlops.params import validate_app

SETTING_KEYS = ("port", "cpus", "memory", "ready_timeout", "target", "serving")
# The Kubernetes target's settings (docs/kubernetes.md); the Docker target ignores them.
K8S_SETTING_KEYS = ("namespace", "replicas", "max_replicas", "cpu_target_percent", "ingress_host", "ingress_class",
                    "image_pull_secret", "canary_traffic_percent")
RESERVED_PORTS = {5000: "the local image registry", 8001: "the MLflow UI"}
TARGETS = ("docker", "k8s")
SUPPORTED_TARGETS = ("docker", "k8s")
SUPPORTED_SERVING = ("bento+gateway", "bento", "fastapi")
#: the images (roles) each serving mode runs, model server first, and the one that binds the app's port
SERVING_ROLES = {"bento+gateway": ("bento", "gateway"), "bento": ("bento",), "fastapi": ("server",)}
FRONT_DOOR = {"bento+gateway": "gateway", "bento": "bento", "fastapi": "server"}
_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)([bkmg]?)", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_SERVING = re.compile(r"[a-z0-9][a-z0-9+-]{0,39}")
MIN_MEMORY = 16 * 1024**2  # below this neither image starts; docker's own floor is 6m
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*")
_IPV4_LIKE = re.compile(r"[0-9.]+")


def _k8s_name(value: str, what: str) -> str:
    if not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError(f"{what} must be a DNS subdomain name: lowercase letters, digits, '-' and '.', at most 253")
    return value


def memory_bytes(value: str) -> int:
    match = _MEMORY.fullmatch(value.strip())
    if not match:
        raise ValueError(f"memory {value!r} is not a docker size (a number with b, k, m or g, e.g. 2g or 512m)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size < MIN_MEMORY:
        raise ValueError(f"memory {value!r} is below the 16m a model server needs to start")
    return size


class _Settings(BaseModel):
    """The fields and checks shared by a projects.yaml entry and a resolved deploy."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    cpus: Optional[float] = None
    memory: Optional[str] = None
    ready_timeout: Optional[float] = None
    target: Optional[str] = None
    serving: Optional[str] = None

    namespace: Optional[str] = None
    replicas: Optional[int] = None
    max_replicas: Optional[int] = None
    cpu_target_percent: Optional[int] = None
    ingress_host: Optional[str] = None
    ingress_class: Optional[str] = None
    image_pull_secret: Optional[str] = None
    canary_traffic_percent: Optional[int] = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value):
        if value is not None and (not _DNS_LABEL.fullmatch(value) or value.startswith("kube-")):
            raise ValueError("namespace must be a DNS label (1-63 lowercase letters, digits or '-') and not a "
                             "kube-* system namespace")
        return value

    @field_validator("replicas", "max_replicas")
    @classmethod
    def _replicas(cls, value):
        if value is not None and not 1 <= value <= 100:
            raise ValueError("replicas must be 1-100")
        return value

    @field_validator("cpu_target_percent")
    @classmethod
    def _cpu_target(cls, value):
        if value is not None and not 1 <= value <= 100:
            raise ValueError("cpu_target_percent must be 1-100")
        return value

    @field_validator("canary_traffic_percent")
    @classmethod
    def _canary(cls, value):
        if value is not None and not 0 <= value <= 100:
            raise ValueError("canary_traffic_percent must be 0-100")
        return value

    @field_validator("ingress_host")
    @classmethod
    def _ingress_host(cls, value):
        if value is not None:
            name = value[2:] if value.startswith("*.") else value
            if not _DNS_SUBDOMAIN.fullmatch(name) or _IPV4_LIKE.fullmatch(name):
                raise ValueError("ingress_host must be a DNS host name (e.g. iris.home.lan or *.home.lan): "
                                 "lowercase letters, digits, '-' and '.', no scheme, port, path or IP address")
        return value

    @field_validator("ingress_class", "image_pull_secret")
    @classmethod
    def _object_name(cls, value, info):
        return value if value is None else _k8s_name(value, info.field_name)

    @field_validator("cpus")
    @classmethod
    def _cpus(cls, value):
        if value is not None and not 0.01 <= value <= 1024:
            raise ValueError("cpus must be between 0.01 and 1024 (a CPU count, e.g. 1 or 0.5)")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value):
        if value is not None:
            memory_bytes(value)
        return value

    @field_validator("ready_timeout")
    @classmethod
    def _ready_timeout(cls, value):
        if value is not None and not 1 <= value <= 3600:
            raise ValueError("ready_timeout must be 1-3600 seconds")
        return value

    @field_validator("target")
    @classmethod
    def _target(cls, value):
        if value is not None and value not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}")
        return value

    @field_validator("serving")
    @classmethod
    def _serving(cls, value):
        if value is not None and not _SERVING.fullmatch(value):
            raise ValueError("serving must be a mode name such as bento+gateway")
        return value


class AppSettings(_Settings):
    """One app's entry in jobs/projects.yaml; keys it omits are None (the defaults apply)."""

    port: Optional[int] = None

    @field_validator("port")
    @classmethod
    def _port(cls, value):
        if value is not None:
            if not 1024 <= value <= 65535:
                raise ValueError("port must be 1024-65535")
            if value in RESERVED_PORTS:
                raise ValueError(f"port {value} is taken by {RESERVED_PORTS[value]}")
        return value


class DeploySettings(_Settings):
    """What one deploy uses, every field set (see ``resolve_settings``)."""

    port: int = 8000
    bind: str = "0.0.0.0"
    cpus: float = 1.0
    memory: str = "2g"
    ready_timeout: float = 180
    target: str = "docker"
    serving: str = "bento+gateway"
    namespace: str = "home-mlops"
    replicas: int = 1
    max_replicas: int = 3
    cpu_target_percent: int = 80

    @model_validator(mode="after")
    def _replica_bounds(self):
        if self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below replicas ({self.replicas})")
        return self

    @field_validator("port")
    @classmethod
    def _port(cls, value):
        if not 1 <= value <= 65535:
            raise ValueError("port must be 1-65535")
        return value

    @field_validator("bind")
    @classmethod
    def _bind(cls, value):
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError("bind must be an IPv4 address: 0.0.0.0 (every address), 127.0.0.1 (this host only) "
                             "or one of this host's addresses") from None
        return value

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory)

    def check_supported(self) -> None:
        """Values that are valid but not built yet: exit 2 before anything happens."""
        if self.target not in SUPPORTED_TARGETS:
            raise BadInput(f"target {self.target!r} is not yet supported",
                           f"target {' or '.join(SUPPORTED_TARGETS)}",
                           "deploy with --target docker (HOME_MLOPS_TARGET) for now")
        if self.serving not in SUPPORTED_SERVING:
            raise BadInput(f"serving mode {self.serving!r} is not yet supported",
                           f"serving {' or '.join(SUPPORTED_SERVING)}",
                           "use --serving bento+gateway, bento or fastapi (HOME_MLOPS_SERVING, or serving: in "
                           "jobs/projects.yaml)")
        host_cpus = os.cpu_count() or 1
        if self.target == "docker" and self.cpus > host_cpus:  # a cluster's nodes are not this host
            raise BadInput(f"cpus {self.cpus:g} is more than this host has ({host_cpus})",
                           f"0.01-{host_cpus}", "lower --cpus (HOME_MLOPS_CPUS) or the app's cpus in jobs/projects.yaml")


def _describe(exc: ValidationError, where: str) -> str:
    return "; ".join(f"{where}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def _bad_file(path: Path, what: str) -> BadInput:
    return BadInput(f"{path}: {what}",
                    "jobs/projects.yaml in JJB's per-value form: `- project: {app: [{<app>: {port: 8000}}, ...]}` "
                    f"with keys {', '.join(SETTING_KEYS)}",
                    "fix the file (see docs/cli-contract.md)")


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _bad_file(path, f"cannot be read as YAML ({type(exc).__name__})") from None


def _file_defaults(path: Path) -> dict[str, Any]:
    """The setting keys of the `- defaults:` entries in jobs/defaults.yaml next to projects.yaml."""
    if not path.is_file():
        return {}
    found: dict[str, Any] = {}
    for item in _load_yaml(path) or []:
        if isinstance(item, dict) and isinstance(item.get("defaults"), dict):
            found.update({k: v for k, v in item["defaults"].items()
                          if k in SETTING_KEYS + K8S_SETTING_KEYS and k != "port"})
    return found


def load_apps(path: Path | str) -> dict[str, AppSettings]:
    """Every app listed in ``path`` with its settings (jobs/defaults.yaml next to it filled in).

    BadInput (exit 2) on a malformed file, an invalid value, or two apps on one port.
    """
    path = Path(path)
    defaults = _file_defaults(path.parent / "defaults.yaml")
    apps: dict[str, AppSettings] = {}
    for item in _load_yaml(path) or []:
        project = item.get("project") if isinstance(item, dict) else None
        if not isinstance(project, dict) or "app" not in project:
            continue
        entries = project["app"]
        if not isinstance(entries, list):
            raise _bad_file(path, "the project's `app` is not a list")
        for entry in entries:
            if isinstance(entry, str):  # the old form: a bare name
                name, values = entry, {}
            elif isinstance(entry, dict) and len(entry) == 1:
                name, values = next(iter(entry.items()))
                values = values or {}
            else:
                raise _bad_file(path, f"app entry {str(entry)[:80]!r} is neither a name nor `name: {{settings}}`")
            if not isinstance(name, str) or not isinstance(values, dict):
                raise _bad_file(path, f"app entry {str(entry)[:80]!r} is neither a name nor `name: {{settings}}`")
            try:
                validate_app(name)
            except BadInput as exc:
                raise _bad_file(path, exc.what) from None
            if name in apps:
                raise _bad_file(path, f"app {name!r} is listed twice")
            try:
                apps[name] = AppSettings(**{**defaults, **values})
            except ValidationError as exc:
                raise _bad_file(path, _describe(exc, f"{name}.")) from None
    _check_unique_ports(path, apps)
    return apps


def _check_unique_ports(path: Path, apps: dict[str, AppSettings]) -> None:
    owners: dict[int, str] = {}
    for name, settings in apps.items():
        if settings.port is None:
            continue
        if settings.port in owners:
            raise BadInput(f"{path}: apps {owners[settings.port]!r} and {name!r} both use port {settings.port}",
                           "a port of its own for every app",
                           f"give {name!r} a free port in jobs/projects.yaml")
        owners[settings.port] = name


def projects_file() -> Path | None:
    from home_mlops.settings import project_root

    root = project_root()
    path = root / "jobs" / "projects.yaml" if root else None
    return path if path and path.is_file() else None


_NUMBER_FIELDS = {"port": int, "cpus": float, "ready_timeout": float, "replicas": int, "max_replicas": int,
                  "cpu_target_percent": int, "canary_traffic_percent": int}


def _number_from_text(field: str, value: Any) -> Any:
    """Options and HOME_MLOPS_* variables arrive as text; the settings are strict, so numbers are
    converted here. Text that is no number stays text and fails validation with the field named
    (inside the command, so the JSON result is still written)."""
    kind = _NUMBER_FIELDS.get(field)
    if kind is None or not isinstance(value, str):
        return value
    try:
        return kind(value.strip())
    except ValueError:
        return value


def resolve_settings(app: str, overrides: dict[str, Any], projects: Path | None = None) -> DeploySettings:
    """The settings for one deploy of ``app``: ``overrides`` (CLI options/env, None = not given) win,
    then the app's entry in ``projects`` (default: the checkout's jobs/projects.yaml), then built-ins."""
    path = projects if projects is not None else projects_file()
    listed: dict[str, Any] = {}
    if path is not None:
        entry = load_apps(path).get(app)
        if entry is not None:
            listed = entry.model_dump(exclude_none=True)
    given = {k: _number_from_text(k, v) for k, v in overrides.items() if v is not None}
    try:
        return DeploySettings(**{**listed, **given})
    except ValidationError as exc:
        raise BadInput(f"deploy settings of app {app!r}: {_describe(exc, '')}",
                       "--port 1-65535, --bind an IPv4 address, --cpus 0.01-1024, --memory like 2g, "
                       "--ready-timeout 1-3600 s, --target docker or k8s, --serving bento+gateway, bento or fastapi "
                       "(the k8s target's settings: docs/kubernetes.md)",
                       "fix the option, its HOME_MLOPS_* variable or the app's entry in jobs/projects.yaml") from None
