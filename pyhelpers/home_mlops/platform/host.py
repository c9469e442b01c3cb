"""The local platform a build needs on a Debian host, brought up idempotently:
dockerd (overlay2), a Distribution registry on 127.0.0.1:5000 with htpasswd
auth, and the offline base image made with debootstrap (no image pulls here).

Machine-wide state (registry data, its generated password) lives in the
platform folder, not in a workspace: HOME_MLOPS_PLATFORM_DIR, default
/var/lib/home-mlops as root.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from home_mlops import console, env, readiness, runner
from home_mlops.errors import Unavailable
from home_mlops.build.labels import LABEL_BASE_RECIPE

BASE_IMAGE = "home-mlops/python-base:3.11"
REGISTRY_ADDR = "127.0.0.1:5000"
REGISTRY_USER = "home-mlops"
# libgomp1: the OpenMP runtime LightGBM and XGBoost wheels load (scikit-learn bundles its own).
_BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates,libgomp1"
# Changing the recipe changes this label, and `platform up` rebuilds the image.
BASE_RECIPE_LABEL = LABEL_BASE_RECIPE
BASE_RECIPE = hashlib.sha256(f"bookworm minbase {_BASE_PACKAGES}".encode()).hexdigest()[:16]


def platform_dir() -> Path:
    default = "/var/lib/home-mlops" if os.geteuid() == 0 else "~/.local/share/home-mlops-platform"
    path = Path(env.PLATFORM_DIR.get() or default).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class RegistryCredentials:
    address: str
    user: str
    password: str

    def __repr__(self) -> str:  # never show the password, even in a debugger or a log
        return f"RegistryCredentials(address={self.address!r}, user={self.user!r}, password='***')"


# --------------------------------------------------------------------------- docker


def docker_client(timeout: int = 600):
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001
        raise Unavailable(
            f"the Docker daemon did not answer ({type(exc).__name__})",
            "a running Docker Engine (DOCKER_HOST or /var/run/docker.sock)",
            "run `home-mlops platform up` (starts dockerd on a Debian host) or start Docker",
        ) from None


def _docker_up() -> bool:
    try:
        docker_client(timeout=5)
        return True
    except Unavailable:
        return False


def ensure_dockerd() -> None:
    if _docker_up():
        console.ok("Docker daemon is running")
        return
    dockerd = shutil.which("dockerd")
    if not dockerd:
        raise Unavailable(
            "dockerd is not installed",
            "Docker Engine",
            "apt-get install -y docker.io (make setup does this)",
        )
    console.step("starting dockerd (overlay2)")
    # Daemons outlive the command: they get no registry password, token or Jenkins variable.
    runner.start([dockerd, "--storage-driver=overlay2"], platform_dir() / "dockerd.log")
    for _ in range(60):
        if _docker_up():
            console.ok("Docker daemon started")
            return
        time.sleep(1)
    raise Unavailable("dockerd did not come up in 60 s", hint=f"see {platform_dir() / 'dockerd.log'}")


def enable_reuseport_migration() -> None:
    """Let the kernel hand queued connections of a closing listener to its
    SO_REUSEPORT twin: what makes the gateway switch-over drop nothing."""
    knob = Path("/proc/sys/net/ipv4/tcp_migrate_req")
    try:
        if knob.exists() and knob.read_text().strip() != "1":
            knob.write_text("1\n")
    except OSError:
        console.warn("could not set net.ipv4.tcp_migrate_req=1; a redeploy may reset a few queued connections")


# --------------------------------------------------------------------------- registry


def registry_credentials() -> RegistryCredentials:
    """The local registry's credentials, made once (random password, file mode 0600)."""
    folder = platform_dir() / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    secret_file = folder / "password"
    if not secret_file.exists():
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    return RegistryCredentials(REGISTRY_ADDR, REGISTRY_USER, secret_file.read_text().strip())


def _registry_answers() -> bool:
    # 401: it answers and asks for the login it was configured with
    return readiness.answers(f"http://{REGISTRY_ADDR}/v2/", ok=(200, 401))


def ensure_registry() -> RegistryCredentials:
    creds = registry_credentials()
    if _registry_answers():
        console.ok(f"registry answers on {REGISTRY_ADDR}")
        return creds
    binary = shutil.which("docker-registry")
    if not binary or not shutil.which("htpasswd"):
        raise Unavailable(
            "docker-registry or htpasswd is not installed",
            "Debian packages docker-registry and apache2-utils",
            "apt-get install -y docker-registry apache2-utils (make setup does this)",
        )
    folder = platform_dir() / "registry"
    # bcrypt line from htpasswd, the password on stdin (never in argv, where ps shows it).
    made = runner.run(["htpasswd", "-niB", creds.user], "htpasswd", quiet=True, stdin=creds.password)
    if made.returncode != 0:
        raise Unavailable(f"htpasswd failed (exit {made.returncode}): {made.stderr.strip()[-300:]}",
                          hint="apt-get install -y apache2-utils (make setup does this)")
    line = made.stdout.strip()
    (folder / "htpasswd").write_text(line + "\n")
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")}, "delete": {"enabled": True}},
        "http": {"addr": REGISTRY_ADDR},
        "auth": {"htpasswd": {"realm": "home-mlops", "path": str(folder / "htpasswd")}},
    }
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    console.step(f"starting the registry on {REGISTRY_ADDR}")
    proc = runner.start([binary, "serve", str(folder / "config.yml")], folder / "registry.log")
    (folder / "registry.pid").write_text(str(proc.pid))
    for _ in range(30):
        if _registry_answers():
            console.ok("registry started")
            return creds
        time.sleep(0.5)
    raise Unavailable("the registry did not come up", hint=f"see {folder / 'registry.log'}")


def stop_registry() -> None:
    pid_file = platform_dir() / "registry" / "registry.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()
        console.ok("registry stopped")


# --------------------------------------------------------------------------- base image


def debian_mirror() -> str:
    """The host's own Debian mirror (never a hard-coded host)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        for match in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if "security" not in match.group(1):
                return match.group(1)
        for match in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M):
            if "security" not in match.group(1):
                return match.group(1)
    raise Unavailable("no Debian mirror found in /etc/apt/sources.list*", hint="configure apt first")


def ensure_base_image(client=None, name: str = BASE_IMAGE) -> str:
    client = client or docker_client()
    import docker.errors

    try:
        image = client.images.get(name)
        if (image.labels or {}).get(BASE_RECIPE_LABEL) == BASE_RECIPE:
            console.ok(f"base image {name} present")
            return image.id
        console.step(f"base image {name} was made from another recipe: rebuilding it")
    except docker.errors.ImageNotFound:
        pass
    if not shutil.which("debootstrap"):
        raise Unavailable("debootstrap is not installed", hint="apt-get install -y debootstrap")
    with tempfile.TemporaryDirectory(prefix="home-mlops-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        console.step(f"building {name} with debootstrap (about a minute)")
        made = runner.run(["debootstrap", "--variant=minbase", f"--include={_BASE_PACKAGES}", "bookworm", str(rootfs),
                           debian_mirror()], "debootstrap", quiet=True)  # its hundreds of lines only on failure
        if made.returncode != 0:
            raise Unavailable(f"debootstrap failed (exit {made.returncode}): "
                              f"{(made.stderr or made.stdout).strip()[-600:]}",
                              hint="check the host's Debian mirror (/etc/apt/sources.list*) and the network, then retry")
        # Trim what a runtime never needs: apt lists, docs, man pages, caches.
        for rel in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info"):
            shutil.rmtree(rootfs / rel, ignore_errors=True)
        tarball = Path(tmp) / "rootfs.tar"
        packed = runner.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], "tar", quiet=True)
        if packed.returncode != 0:
            raise Unavailable(f"packing the base image's root folder failed: {packed.stderr.strip()[-300:]}")
        repo, tag = name.rsplit(":", 1)
        client.api.import_image_from_file(
            str(tarball), repository=repo, tag=tag, changes=[f"LABEL {BASE_RECIPE_LABEL}={BASE_RECIPE}"]
        )
    image = client.images.get(name)
    console.ok(f"base image {name} built ({image.attrs['Size'] / 1e6:.0f} MB)")
    return image.id


def up() -> RegistryCredentials:
    ensure_dockerd()
    enable_reuseport_migration()
    creds = ensure_registry()
    ensure_base_image()
    return creds


def down() -> None:
    stop_registry()


def status() -> dict:
    docker_ok = _docker_up()
    base = False
    if docker_ok:
        import docker.errors

        try:
            base = (docker_client().images.get(BASE_IMAGE).labels or {}).get(BASE_RECIPE_LABEL) == BASE_RECIPE
        except docker.errors.ImageNotFound:
            pass
    return {"docker": docker_ok, "registry": _registry_answers(), "base_image": base, "registry_address": REGISTRY_ADDR}
