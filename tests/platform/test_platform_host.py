"""platform/: the host's daemons (dockerd, the registry) and the MLflow tracking server."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from home_mlops.errors import BadInput
from home_mlops.platform import tracking_server

CLI = str(Path(sys.executable).parent / "home-mlops")


def test_platform_daemons_inherit_no_secret(monkeypatch, tmp_path):
    """dockerd and the registry outlive the command that starts them: whatever secrets that
    command had (a bound REGISTRY_PASSWORD, Jenkins' variables) must not live on in them.
    Unit test of the wiring (starting a second dockerd here is not allowed)."""
    from types import SimpleNamespace

    from home_mlops.platform import host as platform

    secrets = {"REGISTRY_PASSWORD": "hmt-d-reg", "JENKINS_ADMIN_PASSWORD": "hmt-d-admin", "MY_API_TOKEN": "hmt-d-tok"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME_MLOPS_PLATFORM_DIR", str(tmp_path))
    started: list[tuple[list[str], dict]] = []

    def record(argv, **kw):
        started.append((argv, kw.get("env")))
        return SimpleNamespace(pid=0, returncode=0, stdout="home-mlops:$2y$hash\n", stderr="")

    answers = iter([False, True])
    monkeypatch.setattr(platform, "_docker_up", lambda: next(answers))
    monkeypatch.setattr(platform, "_registry_answers", lambda: next(answers))
    monkeypatch.setattr(platform.shutil, "which", lambda name: f"/usr/bin/{name}")
    from home_mlops import runner  # the one place a program is started

    monkeypatch.setattr(runner.subprocess, "Popen", record)
    monkeypatch.setattr(runner.subprocess, "run", record)
    platform.ensure_dockerd()
    answers = iter([False, True])
    platform.ensure_registry()
    assert [argv[0] for argv, _ in started] == ["/usr/bin/dockerd", "htpasswd", "/usr/bin/docker-registry"]
    for argv, env in started:
        assert env is not None and env.get("PATH") == os.environ["PATH"], argv
        assert not set(secrets) & set(env), argv


def test_tracking_server_argv_takes_only_stores_it_can_serve(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME_MLOPS_HOME", str(tmp_path))
    argv = tracking_server.server_argv("127.0.0.1", 5099, None, str(tmp_path / "artifacts"))
    assert argv[1:] == ["server", "--host", "127.0.0.1", "--port", "5099",
                        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                        "--artifacts-destination", (tmp_path / "artifacts").as_uri(), "--serve-artifacts"]
    for destination in ("ftp://host/x", "relative/folder", "hdfs://nn/x"):
        with pytest.raises(BadInput):
            tracking_server.server_argv("127.0.0.1", 5099, None, destination)


def test_mlflow_server_command_serves_and_stops_on_sigterm(tmp_path):
    """`home-mlops mlflow-server` execs the MLflow server itself: /health answers, and the
    signal a supervisor sends reaches the server (the command leaves no orphan behind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HOME_MLOPS_HOME": str(tmp_path)}
    proc = subprocess.Popen([CLI, "mlflow-server", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the MLflow server never answered /health")
        proc.send_signal(signal.SIGTERM)  # to the command's own pid: after the exec, the server's
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60  # its workers go with it: nothing answers on the port
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.HTTPError:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the MLflow server's workers still answer after the command was stopped")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
