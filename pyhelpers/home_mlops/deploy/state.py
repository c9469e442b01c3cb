"""Deploy state on disk: the per-app lock, the deployment history and the
docker-compose.yml that describes the running pair.

Everything lives under ``platform_dir()/deploy/``:
  host.lock                   fcntl lock held from a deploy's port check to its switch (every app),
                              in /run/lock/home-mlops-deploy.lock wherever /run/lock is writable
  <app>.lock                  fcntl lock held for the whole of a deploy/rollback/undeploy
  <app>.json                  history, oldest first (deploys, rollbacks, undeploys)
  <app>/docker-compose.yml    the pair as deployed (for people and for `docker-compose`)

root and the jenkins user deploy on the same host, so the folder is created
owned by the docker group, group-writable and setgid (files in it get that group),
and the files group-writable: every member of the docker group (root-equivalent on
this host anyway) shares the locks and the history; other users can only read.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from home_mlops.errors import DeployFailed
from home_mlops.platform.host import platform_dir


SHARED_GROUP = "docker"
SHARED_DIR_MODE = 0o2775
SHARED_FILE_MODE = 0o664


def _share(path: Path | int, mode: int) -> None:
    """Group ``docker`` and ``mode`` on a folder or file we created (best effort: no such group, not ours)."""
    import grp

    try:
        gid = grp.getgrnam(SHARED_GROUP).gr_gid
    except KeyError:
        gid = -1
    try:
        if isinstance(path, int):
            os.fchown(path, -1, gid)
            os.fchmod(path, mode)
        else:
            os.chown(path, -1, gid)
            os.chmod(path, mode)
    except OSError:
        pass


def state_dir(base: Path | None = None) -> Path:
    path = Path(base) if base else platform_dir() / "deploy"
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        _share(path, SHARED_DIR_MODE)
    return path


def _atomic_write(path: Path, text: str) -> None:
    if not path.parent.is_dir():  # <app>/ for the compose file: the next deployer may be another user
        path.parent.mkdir(parents=True, exist_ok=True)
        _share(path.parent, SHARED_DIR_MODE)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
            _share(handle.fileno(), SHARED_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------- lock


def _open_lock(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, SHARED_FILE_MODE)
    except PermissionError:  # another user's lock we may not write: a read-only fd locks just as well
        fd = os.open(path, os.O_RDONLY)
    if os.fstat(fd).st_uid == os.geteuid():
        _share(fd, SHARED_FILE_MODE)  # the umask narrowed it
    return fd


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        return False


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def _held(path: Path, what: str, wait_seconds: float | None, on_busy) -> Iterator[Path]:
    """Hold the flock on ``path``; ``on_busy(holder)`` builds the error when it cannot be had
    (at once when ``wait_seconds`` is None, else after waiting that long)."""
    fd = _open_lock(path)
    try:
        deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
        told = False
        while not _try_flock(fd):
            if deadline is None or time.monotonic() > deadline:
                raise on_busy(_holder(fd))
            if not told:
                from home_mlops import console

                console.step(f"waiting for {path.name} ({_holder(fd)})")
                told = True
            time.sleep(0.1)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, {what}, since {now_iso()}\n".encode(), 0)
        except OSError:  # a lock file of another user opened read-only: the lock still holds
            pass
        yield path
    finally:
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # releases the flock


def app_lock(app: str, what: str, base: Path | None = None):
    """Hold ``<app>.lock`` (non-blocking). A second deploy of the same app fails at once."""
    def busy(holder: str) -> DeployFailed:
        return DeployFailed(
            f"another deploy of app {app!r} is in progress ({holder}); nothing was changed",
            "one deploy, rollback or undeploy at a time per app",
            "wait for it to finish (see `home-mlops status`), then run this deploy again",
        )

    return _held(state_dir(base) / f"{app}.lock", what, None, busy)


def host_lock(what: str, wait_seconds: float, base: Path | None = None):
    """Hold ``host.lock``: one deploy at a time checks ports and switches on this host (waits its turn)."""
    def busy(holder: str) -> DeployFailed:
        return DeployFailed(
            f"the host deploy lock stayed busy for {wait_seconds:.0f} s ({holder}); nothing was switched",
            "other deploys on this host to finish their switch within the ready timeout",
            "run the deploy again; if it keeps happening, look for a stuck `home-mlops` process",
        )

    return _held(host_lock_path(base), what, wait_seconds, busy)


# Ports are a host-wide namespace, so the lock that guards them must not depend on who deploys:
# root's platform folder is /var/lib/home-mlops, a jenkins user's is under its home. /run/lock
# (world-writable, sticky) is the one folder every user of the host shares.
HOST_LOCK_DIR = Path("/run/lock")


def host_lock_path(base: Path | None = None) -> Path:
    if HOST_LOCK_DIR.is_dir() and os.access(HOST_LOCK_DIR, os.W_OK | os.X_OK):
        return HOST_LOCK_DIR / "home-mlops-deploy.lock"
    return state_dir(base) / "host.lock"


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
    """Deployments since the last undeploy that were not rolled back (the last one is what should be serving)."""
    undeploys = [i for i, e in enumerate(entries) if e.get("event") == "undeployed"]
    since = entries[undeploys[-1] + 1:] if undeploys else entries
    return [e for e in since if not e.get("rolled_back_at") and e.get("event", "deployed") == "deployed"]


def record_deployment(app: str, entry: dict[str, Any], base: Path | None = None) -> None:
    entries = read_history(app, base)
    entries.append({"event": "deployed", **entry, "deployed_at": now_iso()})
    write_history(app, entries, base)


def record_undeploy(app: str, removed: list[str], base: Path | None = None) -> None:
    entries = read_history(app, base)
    entries.append({"event": "undeployed", "removed": removed, "undeployed_at": now_iso()})
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
        "# Host networking; the gateway binds HOME_MLOPS_GATEWAY_HOST, the model server loopback.\n"
        "# Regenerated on every deploy: do not edit.\n"
    )
    _atomic_write(path, header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return path
