"""Resolve through MLflow tracking: a real `mlflow server` (HTTP, proxied artifacts) and a sqlite URI.

Covers both model layouts (MLflow 3 logged model, MLflow 2-style run artifacts), a run
that logged two models, the experiment/run ownership check, and an unreachable server.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import CLI, ROOT, cli_env, stop_process_group
from test_resolve_nas import build_store, flat, resolve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`home-mlops mlflow-server` on a free port, sqlite backend, proxied local artifacts."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [CLI, "mlflow-server", "--port", str(port), "--backend-store-uri", f"sqlite:///{root / 'db'}",
         # two workers, not MLflow's four: half the start-up, and still more than one for the SIGTERM check
         "--artifacts-destination", str(root / "artifacts"), "--workers", "2"],
        env=cli_env(root / "state"), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        # MLflow's job runner stays off (tracking_server.server_env): the group is the server and its workers
        extra = [cmd for cmd in process_group(proc.pid) if "jobs._job_runner" in cmd or "huey" in cmd]
        assert not extra, extra
        yield url, root
        # `home-mlops mlflow-server` execs the server: the SIGTERM a supervisor sends the command's
        # pid stops the server and its workers (no orphan keeps answering on the port).
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
            except OSError:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the MLflow server's workers still answer after SIGTERM to home-mlops mlflow-server")
    finally:
        stop_process_group(proc, timeout=30)
        log.close()


def process_group(pgid: int) -> list[str]:
    """The command lines of the processes in process group ``pgid``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) == pgid:
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (ProcessLookupError, FileNotFoundError):
            continue
    return found


@pytest.fixture(scope="module")
def server_store(server, tmp_path_factory) -> "object":
    url, _ = server
    return build_store(url, tmp_path_factory.mktemp("server-work"), None, tag="-srv")


@pytest.fixture(scope="module")
def sqlite_store(local_sqlite_store):
    return local_sqlite_store  # logged once per session (conftest.py)


# --------------------------------------------------------------------------- through the server


@pytest.mark.timeout(1200)
def test_train_and_resolve_through_server(server, state, tmp_path):
    url, root = server
    env = cli_env(state, MLFLOW_TRACKING_URI=url)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "training" / "tabular-iris-multi-classifier" / "train.py")],
        env=env, capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = dict(re.findall(r"^(EXPERIMENT_ID|RUN_ID|MODEL_ID)=(\S+)$", proc.stdout, re.M))
    # The artifacts went through the server into its destination, not into the client's state.
    assert list((root / "artifacts").rglob(f"{ids['MODEL_ID']}/artifacts/MLmodel"))
    assert not (state / "mlruns").exists()

    proc, data = resolve(env, ids["EXPERIMENT_ID"], ids["RUN_ID"], tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["source"] == "tracking"
    assert data["model_id"] == ids["MODEL_ID"] and data["model_uri"] == f"models:/{ids['MODEL_ID']}"
    assert url in flat(proc.stderr)
    local = Path(data["local_path"])
    assert (local / "MLmodel").is_file() and local.is_relative_to(state)
    assert "sklearn" in data["flavors"]


@pytest.mark.timeout(900)
def test_mlflow2_layout_through_server(server, server_store, state, tmp_path):
    url, _ = server
    s = server_store
    proc, data = resolve(cli_env(state, MLFLOW_TRACKING_URI=url), s.exp_a, s.run2, tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] is None
    assert data["model_uri"] == f"runs:/{s.run2}/model"
    assert (Path(data["local_path"]) / "MLmodel").is_file()


@pytest.mark.timeout(900)
def test_wrong_experiment_through_server(server, server_store, state, tmp_path):
    url, _ = server
    s = server_store
    proc, data = resolve(cli_env(state, MLFLOW_TRACKING_URI=url), s.exp_b, s.run3, tmp_path / "r.json")
    assert proc.returncode == 3, proc.stderr[-3000:]
    message = flat(proc.stderr)
    assert f"experiment {s.exp_a}" in message and f"experiment {s.exp_b}" in message


# --------------------------------------------------------------------------- through sqlite


@pytest.mark.timeout(900)
def test_mlflow3_through_sqlite(sqlite_store, state, tmp_path):
    s = sqlite_store
    proc, data = resolve(cli_env(state, MLFLOW_TRACKING_URI=s.tracking_uri), s.exp_a, s.run3, tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] == s.model3 and data["source"] == "tracking"
    # The --tracking-uri option wins over the environment.
    env = cli_env(state, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    proc, data = resolve(env, s.exp_a, s.run3, tmp_path / "o.json", "--tracking-uri", s.tracking_uri)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] == s.model3 and data["cache_hit"] is True


@pytest.mark.timeout(900)
def test_mlflow2_layout_through_sqlite(sqlite_store, state, tmp_path):
    s = sqlite_store
    proc, data = resolve(cli_env(state, MLFLOW_TRACKING_URI=s.tracking_uri), s.exp_a, s.run2, tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] is None
    assert data["model_uri"] == f"runs:/{s.run2}/model"
    assert data["artifact_uri"].endswith(f"{s.run2}/artifacts/model")
    local = Path(data["local_path"])
    src = s.artifact_root / s.exp_a / s.run2 / "artifacts" / "model"
    assert sorted(p.name for p in src.iterdir()) == sorted(
        p.name for p in local.iterdir() if p.name != ".home-mlops-manifest.json"
    )


@pytest.mark.timeout(900)
def test_two_models_deterministic_and_model_name(sqlite_store, state, tmp_path):
    s = sqlite_store
    env = cli_env(state, MLFLOW_TRACKING_URI=s.tracking_uri)
    chosen = []
    for i in range(2):  # the same answer every time
        proc, data = resolve(env, s.exp_a, s.run_two, tmp_path / f"{i}.json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "--model-name" in flat(proc.stderr)
        chosen.append(data["model_id"])
    assert chosen[0] == chosen[1]
    # Newest first: "second" was logged after "first".
    assert chosen[0] == s.model_second
    proc, data = resolve(env, s.exp_a, s.run_two, tmp_path / "first.json", "--model-name", "first")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] == s.model_first and data["model_name"] == "first"
    proc, data = resolve(env, s.exp_a, s.run_two, tmp_path / "byid.json", "--model-name", s.model_first)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] == s.model_first
    proc, data = resolve(env, s.exp_a, s.run_two, tmp_path / "none.json", "--model-name", "third")
    assert proc.returncode == 3, proc.stderr[-3000:]
    message = flat(proc.stderr)
    assert "third" in message and "first" in message and "second" in message


@pytest.mark.timeout(900)
def test_wrong_experiment_and_unknown_run_through_sqlite(sqlite_store, state, tmp_path):
    s = sqlite_store
    env = cli_env(state, MLFLOW_TRACKING_URI=s.tracking_uri)
    proc, data = resolve(env, s.exp_b, s.run2, tmp_path / "w.json")
    assert proc.returncode == 3, proc.stderr[-3000:]
    message = flat(proc.stderr)
    assert f"experiment {s.exp_a}" in message and f"experiment {s.exp_b}" in message
    assert "Traceback" not in proc.stderr and data["exit_code"] == 3

    unknown = "fedcba9876543210fedcba9876543210"
    proc, data = resolve(env, s.exp_a, unknown, tmp_path / "u.json")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert unknown in flat(proc.stderr) and "Traceback" not in proc.stderr
    assert not any((state / "cache" / "models").glob("m-*"))


@pytest.mark.timeout(300)
def test_unreachable_tracking_server(state, tmp_path):
    port = free_port()  # bound then released: nothing listens there
    env = cli_env(state, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    proc, data = resolve(env, "1", "0123456789abcdef0123456789abcdef", tmp_path / "r.json", timeout=200)
    elapsed = time.monotonic() - started
    assert proc.returncode == 7, proc.stderr[-3000:]
    assert elapsed < 60, elapsed
    assert "Traceback" not in proc.stderr
    message = flat(proc.stderr)
    assert f"127.0.0.1:{port}" in message and "did not answer" in message
    assert data["ok"] is False and data["exit_code"] == 7
