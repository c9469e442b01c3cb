"""Which image registries home-mlops may contact, decided before any connection.

AR_NAME is typed into a Jenkins form, so by itself it must not be enough to make
the agent send its registry password (or any request) to a host nobody chose.
HOME_MLOPS_TRUSTED_REGISTRIES lists the registries (comma-separated host[:port]);
unset, they are the local platform's registry plus the hosts the Docker config
already holds credentials for (its `auths`). Every registry contact (push,
manifest inspect, pull) asks `require_trusted` first.

Hosts are compared exactly, lowercased: `localhost` and `127.0.0.1` are different
hosts, and `host` and `host:443` are different entries (no default ports are
guessed). Docker's legacy Hub name index.docker.io means docker.io, as in Docker.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from home_mlops import console, env
from home_mlops.errors import BadInput
from home_mlops.platform.host import REGISTRY_ADDR

#: Comma-separated host[:port] of the registries home-mlops may push to, pull from or inspect.
TRUSTED_REGISTRIES_ENV = env.TRUSTED_REGISTRIES.name
DOCKER_HUB = "docker.io"
_LEGACY_HUB = "index.docker.io"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?")


@dataclass(frozen=True)
class TrustedRegistries:
    hosts: frozenset[str]
    source: str  # where the list came from, said in every refusal
    from_setting: bool  # HOME_MLOPS_TRUSTED_REGISTRIES (else the default, which `docker login` extends)

    def require(self, ref: str) -> str:
        """The registry host of ``ref``; BadInput (exit 2) when it is not trusted."""
        host = registry_host(ref)
        if host not in self.hosts:
            listed = ",".join(sorted(self.hosts)) or "(none)"
            login = "" if self.from_setting else " (or `docker login` to it)"
            raise BadInput(
                f"registry {host!r} (of image {_shown(ref)}) is not a trusted registry; nothing was sent to it",
                f"a registry listed in {TRUSTED_REGISTRIES_ENV}; trusted now: {listed} ({self.source})",
                f"if {host} is your registry, add it: {TRUSTED_REGISTRIES_ENV}={','.join(sorted(self.hosts | {host}))}"
                f"{login}; otherwise correct AR_NAME",
            )
        return host


def registry_host(ref: str) -> str:
    """The registry an image reference points at, by Docker's rule: the first path
    component is a host when it has a '.' or ':', is 'localhost' or has capitals;
    otherwise the image lives on Docker Hub."""
    first, slash, _ = ref.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return DOCKER_HUB
    host = first.lower()
    return DOCKER_HUB if host == _LEGACY_HUB else host


def normalise_host(value: str, *, source: str) -> str:
    """host[:port] lowercased and checked; BadInput naming ``source`` otherwise."""
    host = value.strip().lower()
    match = _HOST.fullmatch(host)
    if not match or (match["port"] is not None and not 1 <= int(match["port"]) <= 65535):
        raise BadInput(
            f"{source}: {_shown(value)} is not a registry host",
            "host or host:port (port 1-65535), without a scheme or a path, e.g. 127.0.0.1:5000, "
            "docker.io, europe-west1-docker.pkg.dev",
            f"correct {source}",
        )
    return DOCKER_HUB if host == _LEGACY_HUB else host


def parse_trusted(value: str) -> frozenset[str]:
    """The hosts of a HOME_MLOPS_TRUSTED_REGISTRIES value (empty entries are skipped)."""
    hosts = frozenset(normalise_host(item, source=TRUSTED_REGISTRIES_ENV) for item in value.split(",") if item.strip())
    if not hosts:
        raise BadInput(
            f"{TRUSTED_REGISTRIES_ENV}={_shown(value)} lists no registry",
            "comma-separated host[:port], e.g. 127.0.0.1:5000,docker.io",
            f"unset {TRUSTED_REGISTRIES_ENV} for the default, or list your registries",
        )
    return hosts


def docker_config_path() -> Path:
    """The Docker CLI's config file: $DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    folder = env.DOCKER_CONFIG.get()
    return (Path(folder).expanduser() if folder else Path.home() / ".docker") / "config.json"


def docker_config_hosts(path: Path) -> frozenset[str]:
    """The registries the Docker config holds credentials for (keys of `auths`)."""
    if not path.is_file():
        return frozenset()
    source = f"the Docker config {path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(
            f"{source} cannot be read as JSON ({type(exc).__name__})",
            'a JSON object like {"auths": {"127.0.0.1:5000": {...}}}',
            "repair it (docker login rewrites it), or point DOCKER_CONFIG at another folder",
        ) from None
    auths = data.get("auths", {}) if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise BadInput(f"{source}: 'auths' is not an object", '{"auths": {"<host>": {...}}}', "repair the file")
    hosts = set()
    for key in auths:
        try:
            hosts.add(normalise_host(_config_key_host(key), source=f"{source} 'auths' key"))
        except BadInput:
            # Docker keeps any key; one that is no host[:port] can never be an AR_NAME's host.
            console.warn(f"{source}: ignoring 'auths' key {_shown(key)} (not a registry host)")
    return frozenset(hosts)


def _config_key_host(key: str) -> str:
    """`auths` keys are a host ('127.0.0.1:5000') or a URL ('https://index.docker.io/v1/')."""
    if "://" in key:
        return urlsplit(key).netloc or key
    return key.split("/", 1)[0]


def trusted_registries() -> TrustedRegistries:
    raw = env.TRUSTED_REGISTRIES.get() or ""
    if raw.strip():
        return TrustedRegistries(parse_trusted(raw), f"from {TRUSTED_REGISTRIES_ENV}", from_setting=True)
    path = docker_config_path()
    return TrustedRegistries(
        frozenset({REGISTRY_ADDR}) | docker_config_hosts(path),
        f"{TRUSTED_REGISTRIES_ENV} is unset: the local platform registry and the 'auths' hosts of {path}",
        from_setting=False,
    )


def require_trusted(ref: str) -> str:
    """The registry host of ``ref`` when home-mlops may contact it; else BadInput (exit 2)."""
    return trusted_registries().require(ref)


def require_trusted_registry(ar_name: str) -> str:
    """The same check for an AR_NAME prefix (images are <AR_NAME>/<app>-<role>:<tag>): the
    commands call it right after validating their parameters, before any build work."""
    return require_trusted(f"{ar_name}/image")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 120 else value[:117] + "...")
