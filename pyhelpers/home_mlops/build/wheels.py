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
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from home_mlops import console, output
from home_mlops.resolve.cache import sha256_file
from home_mlops.errors import BuildFailed
from home_mlops.build.pip import run_pip
from home_mlops.resolve.requirements import parse_line
from home_mlops.platform.host import platform_dir

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


def _fail(what: str, proc: subprocess.CompletedProcess) -> BuildFailed:
    tail = output.clean_lines(proc.stderr or proc.stdout, last=8)
    return BuildFailed(
        f"{what}:\n" + "\n".join(tail),
        "packages available as wheels for this Python from the configured package index",
        "check the model's requirements (resolve --json shows them) and `pip config list`",
        log_tail=tail,
    )


@dataclass(frozen=True)
class LockedWheel:
    """One line of a lock: `name==version --hash=sha256:<hex>` (pip's hash-checking format)."""

    name: str
    version: str
    sha256: str

    @property
    def line(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}"

    @classmethod
    def parse(cls, line: str) -> "LockedWheel":
        pin, _, digest = line.partition(" --hash=sha256:")
        name, _, version = pin.partition("==")
        if not (name and version and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise ValueError(f"not a lock line: {line!r}")
        return cls(name, version, digest)


def _from_report(entry: dict) -> LockedWheel:
    meta = entry["metadata"]
    digest = ((entry.get("download_info") or {}).get("archive_info") or {}).get("hashes", {}).get("sha256")
    if not digest:
        raise BuildFailed(
            f"pip reported no sha256 for {meta['name']}=={meta['version']}",
            "an index that publishes wheel hashes (PyPI and pip's find-links do)",
            "check the host's pip configuration (pip config list)",
        )
    return LockedWheel(meta["name"], meta["version"], digest)


def lock(requirements: list[str]) -> list[str]:
    """The full closure as lock lines (name==version --hash=sha256:...), cached by the top-level set.

    Hashes come from pip's resolver report: every later download and install
    runs in hash-checking mode, so an unpinned name resolves once and can never
    be swapped for another file under the same version."""
    for number, line in enumerate(requirements, start=1):  # defence in depth: resolve refused these already
        parse_line(line, number, "the image requirements")
    key = hashlib.sha256(("v2-hashes\n" + "\n".join(sorted(requirements)) + sys.version.split()[0]).encode()).hexdigest()[:24]
    locks = platform_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    cached = locks / f"{key}.txt"
    if cached.is_file():
        try:
            return [LockedWheel.parse(line).line for line in cached.read_text().splitlines()]
        except ValueError:
            cached.unlink(missing_ok=True)  # damaged: resolve again
    console.step(f"locking {len(requirements)} requirements (pip resolver, host settings, wheels only)")
    with tempfile.TemporaryDirectory() as tmp:
        req_file = Path(tmp) / "requirements.txt"
        req_file.write_text("\n".join(requirements) + "\n")
        report = Path(tmp) / "report.json"
        proc = run_pip(
            "install", "--dry-run", "--ignore-installed", "--only-binary=:all:", "--quiet",
            "--report", str(report), "-r", str(req_file),
        )
        if proc.returncode != 0:
            raise _fail("could not resolve the image's requirements", proc)
        entries = json.loads(report.read_text())["install"]
    pinned = sorted((_from_report(e).line for e in entries), key=str.lower)
    tmp_lock = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp_lock.write_text("\n".join(pinned) + "\n")
    os.replace(tmp_lock, cached)
    return pinned


def wheel_cache() -> Path:
    path = platform_dir() / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_wheels(pinned: list[str], dest: Path) -> list[Path]:
    """Download (once, into the shared cache, hash-checked) and link this lock's wheels into dest.

    Only files whose sha256 is in the lock are linked, so the image's
    hash-checking install finds exactly the locked wheels."""
    cache = wheel_cache()
    locked = [LockedWheel.parse(line) for line in pinned]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(pinned) + "\n")
        lock_file = handle.name
    try:
        proc = run_pip(
            "download", "--no-deps", "--only-binary=:all:", "--require-hashes", "--quiet",
            "-d", str(cache), "-r", lock_file,
        )
    finally:
        os.unlink(lock_file)
    if proc.returncode != 0:
        raise _fail("could not download the image's wheels", proc)
    dest.mkdir(parents=True, exist_ok=True)
    by_name = {_norm(w.name): w for w in locked}
    linked: dict[str, Path] = {}
    for wheel in sorted(cache.glob("*.whl")):
        want = by_name.get(_norm(wheel.name.split("-")[0]))
        if want is None or want.name in linked or sha256_file(wheel) != want.sha256:
            continue
        target = dest / wheel.name
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copy2(wheel, target)
        linked[want.name] = target
    missing = sorted(w.line.split(" ")[0] for w in locked if w.name not in linked)
    if missing:
        raise BuildFailed(f"no wheel with the locked hash for: {', '.join(missing)}", "a wheel for each locked package")
    return list(linked.values())


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")
