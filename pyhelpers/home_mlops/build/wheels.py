"""Wheels and locks, on ``packaging``: every image installs from wheels fetched on the host.

Two ways in, one module (wheel file names are parsed with packaging's
``parse_wheel_filename``, names compared with ``canonicalize_name``):

- a model's image (bento, server): ``lock`` resolves its requirements to a
  hash-pinned closure, ``fetch_wheels`` links exactly the locked files;
- the gateway image: ``runtime_requirements`` pins the gateway's packages to the
  host venv's versions, ``ensure_wheels`` finds (or downloads) the best wheel of
  each for this host's tags.

Lock requirements and fetch their wheels on the host, with the host's pip settings.

Images install from these wheels with no network: the host's pip configuration
(mirrors, CA bundle, the CPU-only torch on the local find-links) is what decides,
which keeps torch CPU-only and builds offline. A lock is computed once per set
of top-level requirements and reused, so a new run of the same app gets a
byte-identical lock and Docker reuses the dependency layer.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

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
        if not (re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise ValueError(f"not a lock line: {line!r}")
        try:
            Version(version)
        except InvalidVersion:
            raise ValueError(f"not a lock line (version {version!r}): {line!r}") from None
        return cls(name, version, digest)

    @property
    def key(self) -> tuple[str, Version]:
        """(canonical name, version): what a wheel file name is matched on."""
        return canonicalize_name(self.name), Version(self.version)


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


@contextmanager
def filling(cache: Path) -> Iterator[None]:
    """Hold the wheel cache while this build downloads into it and reads from it.

    Several apps build at once on one agent and share the cache: pip writes a
    download in place, so without this another build could hash a half-written
    wheel (and refuse it), or remove the other's download list."""
    with open(cache / ".fill.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def fetch_wheels(pinned: list[str], dest: Path) -> list[Path]:
    """Download (once, into the shared cache, hash-checked) and link this lock's wheels into dest.

    Only files whose sha256 is in the lock are linked, so the image's
    hash-checking install finds exactly the locked wheels. pip is asked only for
    the locked wheels the cache lacks: a `pip download` of a lock the cache
    already holds still starts pip and asks the index about every line (about
    6 s of CPU for a model image's hundred wheels, on every build)."""
    cache = wheel_cache()
    locked = [LockedWheel.parse(line) for line in pinned]
    with filling(cache):
        cached = locked_in_cache(cache, locked)
        absent = [w for w in locked if w.name not in cached]
        if absent:
            _download([w.line for w in absent], cache)
            cached |= locked_in_cache(cache, absent)  # hash only what pip just fetched
        dest.mkdir(parents=True, exist_ok=True)
        linked: list[Path] = []
        for wheel in cached.values():
            target = dest / wheel.name
            link_or_copy(wheel, target)
            linked.append(target)
    missing = sorted(w.line.split(" ")[0] for w in locked if w.name not in cached)
    if missing:
        raise BuildFailed(f"no wheel with the locked hash for: {', '.join(missing)}", "a wheel for each locked package")
    return linked


def locked_in_cache(cache: Path, locked: list[LockedWheel]) -> dict[str, Path]:
    """{locked name: the cached wheel file with the lock's version and sha256}, for those the cache holds."""
    by_key = {w.key: w for w in locked}
    found: dict[str, Path] = {}
    for wheel in sorted(cache.glob("*.whl")):
        want = by_key.get(wheel_key(wheel.name))
        if want is None or want.name in found or sha256_file(wheel) != want.sha256:
            continue
        found[want.name] = wheel
    return found


def _download(lines: list[str], cache: Path) -> None:
    """pip download of these lock lines into the cache, hash-checked (the caller holds the cache)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(lines) + "\n")
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


def wheel_key(filename: str) -> tuple[str, Version] | None:
    """(canonical name, version) of a wheel file name; None for a name that is not a wheel's."""
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion):
        return None
    return name, version


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no copy of a 200 MB wheel) where the file system allows it, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# --------------------------------------------------------------------------- the gateway's pins


def runtime_requirements(roots: Iterable[str]) -> dict[str, str]:
    """``{canonical name: installed version}`` for the dependency closure of ``roots``.

    Walks ``importlib.metadata`` requirements of the host environment, keeping
    those whose markers hold here (no extras unless a requirement asks for one).
    """
    environment = default_environment()
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, frozenset[str], str]] = [(r, frozenset(), "the gateway") for r in roots]
    while todo:
        name, extras, wanted_by = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise BuildFailed(
                f"{name} (needed by {wanted_by}) is not installed in {sys.prefix}",
                "the home-mlops venv to hold every package the gateway runs with",
                "reinstall home-mlops (pip install -e .) in this venv",
            ) from None
        pins[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None:
                if not any(req.marker.evaluate({**environment, "extra": e}) for e in ("", *sorted(extras))):
                    continue
            todo.append((req.name, frozenset(canonicalize_name(e) for e in req.extras), key))
    return dict(sorted(pins.items()))


def requirements_text(pins: Mapping[str, str]) -> str:
    lines = ["# the gateway's runtime packages, pinned to the build host's versions (home-mlops)"]
    lines += [f"{name}=={version}" for name, version in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def find_wheels(folder: Path, pins: Mapping[str, str]) -> tuple[dict[str, Path], list[str]]:
    """The best wheel in ``folder`` for each pin (for this host's tags), and the pins without one."""
    priority = {tag: i for i, tag in enumerate(sys_tags())}
    best: dict[str, tuple[int, Path]] = {}
    wanted = {canonicalize_name(n): Version(v) for n, v in pins.items()}
    if folder.is_dir():
        for path in folder.glob("*.whl"):
            try:
                name, version, _build, tags = parse_wheel_filename(path.name)
            except (InvalidWheelFilename, InvalidVersion):
                continue
            if wanted.get(name) != version:
                continue
            rank = min((priority[t] for t in tags if t in priority), default=None)
            if rank is None:
                continue
            if name not in best or rank < best[name][0]:
                best[name] = (rank, path)
    found = {name: best[name][1] for name in best}
    missing = [n for n in sorted(wanted) if n not in found]
    return found, missing


def ensure_wheels(pins: Mapping[str, str], cache_dir: Path) -> dict[str, Path]:
    """Make sure ``cache_dir`` holds a wheel for every pin; download only what is missing.

    Uses ``pip download --only-binary=:all:`` with the host's pip configuration.
    Returns ``{canonical name: wheel path}``.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with filling(cache_dir):
        found, missing = find_wheels(cache_dir, pins)
        if not missing:
            return found
        req_file = cache_dir / ".requirements-download.txt"
        req_file.write_text(requirements_text({n: pins[n] for n in pins if canonicalize_name(n) in missing}))
        proc = run_pip("download", "--only-binary=:all:", "--no-deps", "-d", str(cache_dir), "-r", str(req_file))
        req_file.unlink(missing_ok=True)
        found, missing = find_wheels(cache_dir, pins)
    if proc.returncode != 0 or missing:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise BuildFailed(
            f"could not download wheels for the gateway image: missing {', '.join(missing) or '?'}\n{tail}",
            "pip download to reach the package index configured on this host",
            "check the host's pip configuration (pip config list) and network, then retry",
        )
    return found
