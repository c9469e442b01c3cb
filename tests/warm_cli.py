"""The tests' CLI runs, started from a warm interpreter.

Importing mlflow is about 2.5 s of CPU, and the suite runs the CLI a few hundred times: most of
`make test`'s CPU went to importing the same modules again. Each pytest worker starts one server
(`python warm_cli.py SOCKET`) that imports the heavy third-party modules once and then forks a
fresh process per CLI run. That process gets the caller's stdin, stdout and stderr (the file
descriptors themselves, passed over the Unix socket), argv, environment and folder, imports
home_mlops and runs the same `main()` the `home-mlops` script runs; its exit code is the
interpreter's own (SystemExit, or 1 after an uncaught traceback), atexit handlers included.

Only third-party modules are imported ahead, never home_mlops, so settings the CLI reads at
import still come from the run's environment. A run whose environment differs in what the
interpreter or those modules read at start (PYTHON*, locale, MLflow's logging setup) is a real
exec instead, and so is every run with HOME_MLOPS_TEST_WARM_CLI=0. Tests that need the process
itself (signals, process groups, the console script) use subprocess as before.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import locale
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# what a CLI run spends its start on (python -X importtime); all of it is read-only after import
PRELOAD = ("mlflow", "mlflow.models", "mlflow.artifacts", "mlflow.tracking",
           "mlflow.store.artifact.artifact_repository_registry", "docker", "typer", "rich.console", "pydantic",
           "yaml", "jinja2", "httpx", "packaging.requirements")


def _read_at_start(name: str) -> bool:
    """Environment variables the interpreter or the preloaded modules read once, at start."""
    return name.startswith(("PYTHON", "LC_", "MLFLOW_LOGGING", "MLFLOW_CONFIGURE_LOGGING")) or name == "LANG"


def _startup_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if _read_at_start(k)}


# ---------------------------------------------------------------------------------- the server

def serve(path: str) -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    # out of the collector's sight: each CLI process would otherwise walk (and copy, page by page)
    # the whole preloaded heap at its first full collection
    gc.freeze()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the per-run waiters
    print("ready", flush=True)
    parent = os.getppid()
    listener.settimeout(5)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the pytest worker is gone (killed before its atexit could stop us)
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
                return
            continue
        conn.settimeout(None)
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _wait_for_one(conn)  # returns only in the CLI process, which then runs the CLI
            return
        conn.close()


def _wait_for_one(conn: socket.socket) -> None:
    """The waiter: fork the CLI process, tell the caller its pid and then its exit code."""
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    request = json.loads(message)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _become_the_cli(request, fds)
        return
    for fd in fds:
        os.close(fd)
    conn.send(json.dumps({"pid": pid}).encode())
    _, status = os.waitpid(pid, 0)
    conn.send(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
    os._exit(0)


def _become_the_cli(request: dict, fds: list[int]) -> None:
    moved = [os.dup(fd) for fd in fds]  # out of 0-2 first: a passed fd may itself be 0, 1 or 2
    for fd in fds:
        os.close(fd)
    for target, fd in enumerate(moved):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    sys.path[0] = os.path.dirname(sys.argv[0])  # the console script's own first entry, not tests/
    from home_mlops.cli.app import main

    # SystemExit (typer always ends with one) and uncaught exceptions unwind to the top of this
    # script, where the interpreter exits as the console script's would.
    main()


# ---------------------------------------------------------------------------------- the client

class WarmCli:
    """One server per pytest worker, started on the first run and stopped at exit."""

    def __init__(self, executable: str, env: dict) -> None:
        self.executable = executable
        self.env = env
        self._lock = threading.Lock()
        self._server: subprocess.Popen | None = None
        self._folder = ""

    def _start(self) -> str:
        with self._lock:
            if self._server is None or self._server.poll() is not None:
                self._folder = tempfile.mkdtemp(prefix="hm-warm-cli-")
                self._server = subprocess.Popen(
                    [sys.executable, __file__, self._socket()], env=self.env, cwd=self._folder,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
                if self._server.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"the warm CLI server did not start (exit {self._server.wait()})")
                atexit.register(self.stop)
            return self._socket()

    def _socket(self) -> str:
        return os.path.join(self._folder, "socket")

    def stop(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.kill()
            self._server.wait()
        shutil.rmtree(self._folder, ignore_errors=True)

    def usable_for(self, env: dict) -> bool:
        """Whether a run with this environment starts as it would in a fresh interpreter."""
        return _startup_env(env) == _startup_env(self.env)

    def run(self, args: list[str], env: dict, timeout: float,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
        """What subprocess.run([executable, *args], env=env, capture_output=True, text=True,
        timeout=timeout, cwd=cwd) returns or raises; stdin is this process's, as there."""
        path = self._start()
        argv = [self.executable, *args]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            request = {"argv": argv, "env": dict(env), "cwd": str(Path(cwd or os.getcwd()).resolve())}
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
                conn.connect(path)
                socket.send_fds(conn, [json.dumps(request).encode()], [0, out.fileno(), err.fileno()])
                pid = json.loads(conn.recv(4096))["pid"]
                conn.settimeout(timeout)
                try:
                    reply = conn.recv(4096)
                except TimeoutError:
                    _kill(pid)
                    conn.settimeout(None)
                    conn.recv(4096)
                    raise subprocess.TimeoutExpired(argv, timeout, _text(out), _text(err)) from None
                except BaseException:
                    _kill(pid)  # as subprocess.run does when its wait is cut short (pytest-timeout, Ctrl-C)
                    raise
            return subprocess.CompletedProcess(argv, json.loads(reply)["returncode"], _text(out), _text(err))


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _text(file) -> str:
    """Captured bytes as subprocess.run(text=True) gives them: locale encoding, universal newlines."""
    file.seek(0)
    data = file.read().decode(locale.getpreferredencoding(False))
    return data.replace("\r\n", "\n").replace("\r", "\n")


if __name__ == "__main__":
    serve(sys.argv[1])
