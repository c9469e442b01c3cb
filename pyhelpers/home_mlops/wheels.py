"""Lock requirements and fetch their wheels on the host, with the host's pip settings.

Images install from these wheels with no network: the host's pip configuration
(mirrors, CA bundle, the CPU-only torch on the local find-links) is what decides,
which keeps torch CPU-only and builds offline. A lock is computed once per set
of top-level requirements and reused, so a new run of the same app gets a
byte-identical lock and Docker reuses the dependency layer.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import console
from .errors import BuildFailed
from .platform import platform_dir

# Swaps that serve the same import with far less weight in an image: mlflow-skinny
# is mlflow without the server/UI dependencies; xgboost-cpu has no CUDA (no 300 MB NCCL).
LIGHTER = {"mlflow": "mlflow-skinny", "xgboost": "xgboost-cpu"}


def image_requirements(model_requirements: list[str], extra: list[str]) -> list[str]:
    out = []
    for req in model_requirements:
        name, sep, version = req.partition("==")
        lighter = LIGHTER.get(name.lower())
        out.append(f"{lighter}{sep}{version}" if lighter and sep else req)
    return sorted(set(out) | set(extra), key=str.lower)


def _pip(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env)


def _fail(what: str, proc: subprocess.CompletedProcess) -> BuildFailed:
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    return BuildFailed(
        f"{what}:\n{tail}",
        "packages available as wheels for this Python from the configured package index",
        "check the model's requirements (resolve --json shows them) and `pip config list`",
    )


def lock(requirements: list[str]) -> list[str]:
    """The full closure pinned (name==version), cached by the top-level set."""
    key = hashlib.sha256(("\n".join(sorted(requirements)) + sys.version.split()[0]).encode()).hexdigest()[:24]
    locks = platform_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    cached = locks / f"{key}.txt"
    if cached.is_file():
        return cached.read_text().splitlines()
    console.step(f"locking {len(requirements)} requirements (pip resolver, host settings)")
    with tempfile.TemporaryDirectory() as tmp:
        req_file = Path(tmp) / "requirements.txt"
        req_file.write_text("\n".join(requirements) + "\n")
        report = Path(tmp) / "report.json"
        proc = _pip(
            "install", "--dry-run", "--ignore-installed", "--only-binary=:all:", "--quiet",
            "--report", str(report), "-r", str(req_file),
        )
        if proc.returncode != 0:
            raise _fail("could not resolve the image's requirements", proc)
        entries = json.loads(report.read_text())["install"]
    pinned = sorted(
        (f"{e['metadata']['name']}=={e['metadata']['version']}" for e in entries), key=str.lower
    )
    tmp_lock = cached.with_suffix(".tmp")
    tmp_lock.write_text("\n".join(pinned) + "\n")
    os.replace(tmp_lock, cached)
    return pinned


def wheel_cache() -> Path:
    path = platform_dir() / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_wheels(pinned: list[str], dest: Path) -> list[Path]:
    """Download (once, into the shared cache) and link this lock's wheels into dest."""
    cache = wheel_cache()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(pinned) + "\n")
        lock_file = handle.name
    try:
        proc = _pip("download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(cache), "-r", lock_file)
    finally:
        os.unlink(lock_file)
    if proc.returncode != 0:
        raise _fail("could not download the image's wheels", proc)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {_norm(p.split("==")[0]): p.split("==")[1] for p in pinned}
    linked = []
    for wheel in sorted(cache.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if wanted.get(_norm(name)) == version.split("+")[0] or wanted.get(_norm(name)) == version:
            target = dest / wheel.name
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copy2(wheel, target)
            linked.append(target)
    missing = set(wanted) - {_norm(w.name.split("-")[0]) for w in linked}
    if missing:
        raise BuildFailed(f"no wheel found for: {', '.join(sorted(missing))}", "a wheel for each locked package")
    return linked


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")
