"""The local model cache: one folder per model, written atomically, checksummed.

A download lands in a private temporary folder beside the cache entries and is
renamed into place only when complete, so an interrupted download never leaves
an entry that looks valid. Leftover temporary folders of dead processes are
removed on the next use.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from home_mlops import settings

MANIFEST = ".home-mlops-manifest.json"
_TMP = re.compile(r"^\.tmp-(?P<pid>\d+)-")


def _safe_key(key: str) -> str:
    """A folder name that is always a child of the cache root: never '.', '..', hidden or a temp name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:200]
    return safe if safe and safe[0] not in "._-" else f"_{safe}"[:200]


def source_key(source: str, key: str) -> str:
    """A cache key scoped to where the model came from (tracking URI or NAS root), so a model on
    one source can never fill or claim the entry of a model with the same id on another."""
    return f"{hashlib.sha256(source.encode()).hexdigest()[:16]}-{key}"


def file_digests(folder: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            digests[path.relative_to(folder).as_posix()] = sha256_file(path)
    return digests


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_digest(files: dict[str, str]) -> str:
    """One digest for a model folder: stable across machines and download times."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


class ModelCache:
    def __init__(self, root: Path | None = None):
        self.root = root or settings.cache_dir()
        self.root.mkdir(parents=True, exist_ok=True)

    def entry(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def lookup(self, key: str) -> dict | None:
        """The manifest of an intact entry, or None (a damaged or forged entry is removed).

        Every hit hashes the files again: an entry whose files differ from its
        manifest (edited, truncated, or a manifest written by someone else) is
        never used."""
        folder = self.entry(key)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
            intact = (
                isinstance(files, dict)
                and not any(p.is_symlink() for p in folder.rglob("*"))  # before reading any file
                and file_digests(folder) == files
                and manifest.get("content_digest") == content_digest(files)
            )
        except (ValueError, TypeError, KeyError, AttributeError, OSError):
            intact = False
        if not intact:  # damaged or forged: drop it, the caller downloads again
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return manifest

    def fill(self, key: str, download: Callable[[Path], Path], meta: dict) -> dict:
        """Run download(tmp_folder) -> folder holding the model, then publish atomically."""
        self.clean_stale()
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=self.root))
        try:
            model_dir = download(tmp / "download")
            files = file_digests(model_dir)
            manifest = {**meta, "files": files, "content_digest": content_digest(files)}
            (model_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            final = self.entry(key)
            try:
                os.rename(model_dir, final)
            except OSError:
                if not (final / MANIFEST).is_file():  # not a concurrent twin: a real error
                    raise
            return manifest
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def clean_stale(self) -> None:
        for child in self.root.iterdir():
            match = _TMP.match(child.name)
            if match and not _pid_alive(int(match["pid"])):
                shutil.rmtree(child, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
