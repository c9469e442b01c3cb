"""Resolve from a gs:// NAS, against a local GCS emulator (gcp-storage-emulator), no tracking server."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_env, stop_process_group
from test_resolve_nas import UNREACHABLE, assert_resolved_from_bucket, flat, iris_model, resolve, tracking

EMULATOR = Path(sys.executable).parent / "gcp-storage-emulator"
BUCKET = "home-mlops-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if not EMULATOR.exists():
        pytest.skip(f"{EMULATOR} is not installed (pip install gcp-storage-emulator)")
    port = free_port()
    log_path = tmp_path_factory.mktemp("gcs") / "emulator.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [str(EMULATOR), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    host = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.skip(f"gcp-storage-emulator did not start: {log_path.read_text()[-1500:]}")
            time.sleep(0.2)
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    try:
        yield host
    finally:
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
        stop_process_group(proc, timeout=20)
        log.close()


@pytest.fixture(scope="module")
def gcs_run(emulator, tmp_path_factory):
    """An experiment whose artifact location is gs://BUCKET/mlruns/<id>, and a logged sklearn model."""
    import mlflow
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    storage.Client(project="test", credentials=AnonymousCredentials()).create_bucket(BUCKET)
    root = tmp_path_factory.mktemp("gcs-tracking")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    sql = SqlAlchemyStore(uri, f"gs://{BUCKET}/mlruns")
    exp = sql.create_experiment("gcs")
    sql.engine.dispose()
    model, X = iris_model()
    from importlib.metadata import version

    try:
        with tracking(uri), mlflow.start_run(experiment_id=exp) as run:
            assert mlflow.get_experiment(exp).artifact_location == f"gs://{BUCKET}/mlruns/{exp}"
            info = mlflow.sklearn.log_model(
                model, name="model", input_example=X.head(3),
                pip_requirements=[f"mlflow=={version('mlflow')}", f"scikit-learn=={version('scikit-learn')}"],
            )
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"MLflow could not log to the GCS emulator: {type(exc).__name__}: {str(exc)[:500]}")
    blobs = [b.name for b in storage.Client(project="test", credentials=AnonymousCredentials()).list_blobs(BUCKET)]
    assert f"mlruns/{exp}/models/{info.model_id}/artifacts/MLmodel" in blobs, blobs
    return exp, run.info.run_id, info.model_id, blobs


def gcs_env(state: Path, emulator: str) -> dict:
    return cli_env(state, MLFLOW_TRACKING_URI=UNREACHABLE, STORAGE_EMULATOR_HOST=emulator)


@pytest.mark.timeout(900)
def test_resolve_from_gcs(emulator, gcs_run, state, tmp_path):
    exp, run_id, model_id, blobs = gcs_run
    proc, data = resolve(gcs_env(state, emulator), exp, run_id, tmp_path / "r.json", "--nas", f"gs://{BUCKET}/mlruns")
    assert_resolved_from_bucket(proc, data, state, exp, model_id, blobs)


@pytest.mark.timeout(600)
def test_gcs_unknown_run(emulator, gcs_run, state, tmp_path):
    exp = gcs_run[0]
    unknown = "00000000000000000000000000000abc"
    proc, data = resolve(gcs_env(state, emulator), exp, unknown, tmp_path / "r.json", "--nas", f"gs://{BUCKET}/mlruns")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert unknown in flat(proc.stderr) and "Traceback" not in proc.stderr


@pytest.mark.timeout(600)
def test_gcs_missing_bucket(emulator, gcs_run, state, tmp_path):
    proc, data = resolve(gcs_env(state, emulator), gcs_run[0], gcs_run[1], tmp_path / "r.json", "--nas", "gs://no-such-bucket-xyz/mlruns")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "no-such-bucket-xyz" in flat(proc.stderr) and "Traceback" not in proc.stderr
