"""Deploy state on disk: the per-app lock, the deployment history and the
docker-compose.yml that describes the running pair.

Everything lives under ``platform_dir()/deploy/``:
  <app>.lock                  fcntl lock held for the whole of a deploy/rollback
  <app>.json                  history, oldest first
  <app>/docker-compose.yml    the pair as deployed (for people and for `docker-compose`)
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import DeployFailed
from .platform import platform_dir


def state_dir(base: Path | None = None) -> Path:
    path = Path(base) if base else platform_dir() / "deploy"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------- lock


@contextmanager
def app_lock(app: str, what: str, base: Path | None = None) -> Iterator[Path]:
    """Hold ``<app>.lock`` (non-blocking). A second deploy of the same app fails at once."""
    path = state_dir(base) / f"{app}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            try:
                holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            except OSError:
                holder = "another process"
            raise DeployFailed(
                f"another deploy of app {app!r} is in progress ({holder}); nothing was changed",
                "one deploy or rollback at a time per app",
                "wait for it to finish (see `home-mlops status`), then run this deploy again",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {what}, since {now_iso()}\n".encode(), 0)
        yield path
    finally:
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # releases the flock


# --------------------------------------------------------------------------- history


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def history_path(app: str, base: Path | None = None) -> Path:
    return state_dir(base) / f"{app}.json"


def read_history(app: str, base: Path | None = None) -> list[dict[str, Any]]:
    path = history_path(app, base)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def write_history(app: str, entries: list[dict[str, Any]], base: Path | None = None) -> None:
    _atomic_write(history_path(app, base), json.dumps(entries, indent=2) + "\n")


def active_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries that were not rolled back (the last one is what should be serving)."""
    return [e for e in entries if not e.get("rolled_back_at")]


def record_deployment(app: str, entry: dict[str, Any], base: Path | None = None) -> None:
    entries = read_history(app, base)
    entries.append({**entry, "deployed_at": now_iso()})
    write_history(app, entries, base)


def mark_rolled_back(app: str, run_id: str, base: Path | None = None) -> None:
    """Mark the newest active entry of ``run_id`` as rolled back (so the next rollback goes further back)."""
    entries = read_history(app, base)
    for entry in reversed(entries):
        if not entry.get("rolled_back_at") and entry.get("run_id") == run_id:
            entry["rolled_back_at"] = now_iso()
            break
    write_history(app, entries, base)


# --------------------------------------------------------------------------- compose


def compose_path(app: str, base: Path | None = None) -> Path:
    return state_dir(base) / app / "docker-compose.yml"


def write_compose(app: str, services: dict[str, dict[str, Any]], base: Path | None = None) -> Path:
    """docker-compose.yml (file format 2.4: what Debian's docker-compose 1.29 reads)."""
    doc = {"version": "2.4", "services": services}
    path = compose_path(app, base)
    header = (
        f"# {app}: written by `home-mlops deploy` on {now_iso()}; the running pair.\n"
        "# Host networking, loopback only. Regenerated on every deploy: do not edit.\n"
    )
    _atomic_write(path, header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return path
