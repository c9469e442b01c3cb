"""Resolve and build from an s3:// NAS, against a real S3-compatible server (moto's server mode), no tracking server.

The server is a separate process speaking the S3 REST protocol on 127.0.0.1 (port 19601,
this test's range); boto3 and MLflow talk to it over HTTP exactly as to AWS, only with
MLFLOW_S3_ENDPOINT_URL / AWS_ENDPOINT_URL pointing here and throwaway credentials.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_env, run_cli, stop_process_group
from test_extras import blocked_imports
from test_resolve_nas import UNREACHABLE, assert_resolved_from_bucket, flat, iris_model, resolve, tracking

MOTO = Path(sys.executable).parent / "moto_server"
PORT = 19601
BUCKET = "hmt-s-bucket"
# Throwaway credentials for the local server only (moto accepts any); never real ones.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "hmt-s-key",
    "AWS_SECRET_ACCESS_KEY": "hmt-s-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def start_moto(port: int, log_path: Path, **server_env: str) -> subprocess.Popen:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip(f"port {port} (this test's S3 server) is taken by another process")
    log = log_path.open("w")
    proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, **server_env})
    log.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process_group(proc, timeout=10)
                pytest.skip(f"moto_server did not start: {log_path.read_text()[-1500:]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto_server on 127.0.0.1:PORT; the process environment points MLflow and boto3 at it."""
    pytest.importorskip("boto3", reason="the s3 extra is not installed (pip install -e '.[s3]')")
    if not MOTO.exists():
        pytest.skip(f"{MOTO} is not installed (pip install 'moto[server]', part of the dev extra)")
    proc = start_moto(PORT, tmp_path_factory.mktemp("s3") / "moto.log")
    endpoint = f"http://127.0.0.1:{PORT}"
    settings = {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint}
    old = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield settings
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_process_group(proc, timeout=20)


@pytest.fixture(scope="module")
def s3_run(s3_server, tmp_path_factory):
    """An experiment whose artifact location is s3://BUCKET/mlruns/<id>, and a logged sklearn model."""
    import boto3
    import mlflow
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    s3 = boto3.client("s3", endpoint_url=s3_server["MLFLOW_S3_ENDPOINT_URL"])
    s3.create_bucket(Bucket=BUCKET)
    root = tmp_path_factory.mktemp("s3-tracking")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    sql = SqlAlchemyStore(uri, f"s3://{BUCKET}/mlruns")
    exp = sql.create_experiment("s3")
    sql.engine.dispose()
    model, X = iris_model()
    from importlib.metadata import version

    with tracking(uri), mlflow.start_run(experiment_id=exp) as run:
        assert mlflow.get_experiment(exp).artifact_location == f"s3://{BUCKET}/mlruns/{exp}"
        info = mlflow.sklearn.log_model(
            model, name="model", input_example=X.head(3),
            pip_requirements=[f"mlflow=={version('mlflow')}", f"scikit-learn=={version('scikit-learn')}"],
        )
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]
    assert f"mlruns/{exp}/models/{info.model_id}/artifacts/MLmodel" in keys, keys
    return exp, run.info.run_id, info.model_id, keys


def s3_env(state: Path, server: dict, **extra: str) -> dict:
    return cli_env(state, MLFLOW_TRACKING_URI=UNREACHABLE, **server, **extra)


@pytest.mark.timeout(900)
def test_resolve_from_s3(s3_server, s3_run, state, tmp_path):
    exp, run_id, model_id, keys = s3_run
    proc, data = resolve(s3_env(state, s3_server), exp, run_id, tmp_path / "r.json", "--nas", f"s3://{BUCKET}/mlruns")
    assert_resolved_from_bucket(proc, data, state, exp, model_id, keys)


@pytest.mark.timeout(600)
def test_s3_unknown_run(s3_server, s3_run, state, tmp_path):
    exp = s3_run[0]
    unknown = "00000000000000000000000000503abc"  # "503" in an id is not "unavailable"
    proc, _ = resolve(s3_env(state, s3_server), exp, unknown, tmp_path / "r.json", "--nas", f"s3://{BUCKET}/mlruns")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert unknown in flat(proc.stderr) and "Traceback" not in proc.stderr


@pytest.mark.timeout(600)
def test_s3_missing_bucket(s3_server, s3_run, state, tmp_path):
    proc, _ = resolve(s3_env(state, s3_server), s3_run[0], s3_run[1], tmp_path / "r.json",
                      "--nas", "s3://hmt-s-no-such-bucket/mlruns")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "hmt-s-no-such-bucket" in flat(proc.stderr) and "Traceback" not in proc.stderr


@pytest.mark.timeout(600)
def test_s3_refused_credentials_are_not_not_found(s3_run, state, tmp_path):
    """A server that checks credentials answers 403 InvalidAccessKeyId: 'refused access' (exit 7), from
    botocore's error code. (moto enforces IAM auth when INITIAL_NO_AUTH_ACTION_COUNT is 0.)"""
    exp, run_id = s3_run[0], s3_run[1]
    port = PORT + 1
    proc = start_moto(port, tmp_path / "moto-auth.log", INITIAL_NO_AUTH_ACTION_COUNT="0")
    try:
        endpoint = f"http://127.0.0.1:{port}"
        server = {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint}
        cli, _ = resolve(s3_env(state, server), exp, run_id, tmp_path / "r.json", "--nas", f"s3://{BUCKET}/mlruns")
    finally:
        stop_process_group(proc, timeout=20)
    assert cli.returncode == 7, cli.stderr[-3000:]
    text = flat(cli.stderr)
    # its message says "does not exist in our records": read by substring, that was "not found" (exit 3)
    assert "refused access" in text and "Traceback" not in cli.stderr, text
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in cli.stderr


@pytest.mark.timeout(600)
def test_s3_server_down_is_unavailable(s3_run, state, tmp_path):
    """Nothing listening at the endpoint: exit 7 (unavailable), by botocore's exception class."""
    exp, run_id = s3_run[0], s3_run[1]
    closed = {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:19609", "AWS_ENDPOINT_URL": "http://127.0.0.1:19609",
              "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}
    proc, _ = resolve(s3_env(state, closed), exp, run_id, tmp_path / "r.json", "--nas", f"s3://{BUCKET}/mlruns")
    assert proc.returncode == 7, proc.stderr[-3000:]
    assert "did not answer" in flat(proc.stderr) and "Traceback" not in proc.stderr


@pytest.mark.timeout(600)
def test_s3_without_the_extra_names_it(s3_server, s3_run, state, tmp_path):
    """The issue's example: no botocore used to read as 'not found' (exit 3); it is exit 2 naming [s3]."""
    exp, run_id = s3_run[0], s3_run[1]
    path = blocked_imports(tmp_path / "no-boto", "boto3", "botocore", "s3transfer")
    proc, data = resolve(s3_env(state, s3_server, PYTHONPATH=path), exp, run_id, tmp_path / "r.json",
                         "--nas", f"s3://{BUCKET}/mlruns")
    assert proc.returncode == 2, proc.stderr[-3000:]
    text = flat(proc.stderr)
    assert "[s3]" in text and "not found" not in text and "Traceback" not in proc.stderr, text


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bento_build_from_s3(s3_server, s3_run, state, tmp_path):
    """A full bento-build (resolve, BentoML import and build, docker image) from the s3 NAS, no tracking server."""
    pytest.importorskip("docker")
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"needs a Docker daemon: {type(exc).__name__}")
    exp, run_id, model_id, _ = s3_run
    out = tmp_path / "b.json"
    app = "hmt-s-bento"
    proc = run_cli(["bento-build", "--app", app, "--experiment-id", exp, "--run-id", run_id,
                    "--nas", f"s3://{BUCKET}/mlruns", "--no-push", "--registry", "127.0.0.1:5000/hmt-s",
                    "--json", str(out)], s3_env(state, s3_server))
    assert proc.returncode == 0, proc.stderr[-4000:]
    import json

    data = json.loads(out.read_text())
    image = data["image"]
    try:
        labels = client.images.get(image).labels
        assert any(model_id in value for value in labels.values()), labels
    finally:
        try:
            client.images.remove(image, force=True)
        except docker.errors.APIError:
            pass
