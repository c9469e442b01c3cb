"""platform/: the host's daemons (dockerd, the registry) and the MLflow tracking server's command line
(the server itself, execed by `home-mlops mlflow-server`, is checked in tests/resolve/test_resolve_tracking.py)."""
from __future__ import annotations

import os

import pytest

from home_mlops.errors import BadInput
from home_mlops.platform import tracking_server


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
    workers = tracking_server.server_argv("127.0.0.1", 5099, None, str(tmp_path / "artifacts"), workers=2)
    assert workers == [*argv, "--workers", "2"]
    for destination in ("ftp://host/x", "relative/folder", "hdfs://nn/x"):
        with pytest.raises(BadInput):
            tracking_server.server_argv("127.0.0.1", 5099, None, destination)


def test_tracking_server_runs_no_job_runner_unless_the_operator_asks():
    env = tracking_server.server_env({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    asked = tracking_server.server_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"})
    assert asked["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"
