"""``/invocations`` answers what ``mlflow models serve`` answers, for the same bodies (JSON and CSV).

Real parts on both sides: two scikit-learn models saved with MLflow (iris, and a
pipeline over double/long/string columns), served by the real ``mlflow models serve
--env-manager local`` on a loopback port, and by the front door with the model in
process (the fastapi serving mode's backend). The same bodies go to both; the answers
must be equal, and a body neither can take must be MLflow's 400 BAD_REQUEST on both.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from home_mlops.gateway.app import create_app
from home_mlops.gateway.spec import spec_from_mlmodel
from test_gateway_app import serve

pytest.importorskip("sklearn", reason="needs scikit-learn (pip install -e '.[train]') to make the models")
inprocess = pytest.importorskip("home_mlops.gateway.inprocess", reason="needs the in-process backend (issue 16)")

#: this test file's loopback ports (helper G1's range 19100-19199)
PORTS = range(19110, 19130)
MLFLOW = Path(sys.executable).parent / "mlflow"


def _requirements() -> list[str]:
    """Given, not inferred: MLflow infers them by loading the model in a subprocess (about 5 s of
    CPU per model), and both servers here run in this venv (--env-manager local)."""
    from importlib.metadata import version

    return [f"mlflow=={version('mlflow')}", f"scikit-learn=={version('scikit-learn')}"]


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip(f"needs a free loopback port in {PORTS.start}-{PORTS.stop - 1}")


def _save_iris(folder: Path) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris(as_frame=True)
    X, y = data.data, data.target
    model = LogisticRegression(max_iter=300).fit(X, y)
    path = folder / "iris"
    mlflow.sklearn.save_model(model, path, signature=infer_signature(X, model.predict(X)), input_example=X.head(3),
                             pip_requirements=_requirements())
    return path


def _save_mixed(folder: Path) -> Path:
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(7)
    n = 200
    X = pd.DataFrame({
        "size": rng.normal(10, 3, n),
        "rooms": rng.integers(1, 6, n).astype("int64"),
        "city": rng.choice(["paris", "lyon", "nice"], n),
    })
    y = ((X["size"] > 10) & (X["city"] != "nice")).astype(int)
    pipe = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), ["size", "rooms"]),
                           ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])]),
        LogisticRegression(max_iter=300),
    ).fit(X, y)
    path = folder / "mixed"
    mlflow.sklearn.save_model(pipe, path, signature=infer_signature(X, pipe.predict(X)), input_example=X.head(3),
                             pip_requirements=_requirements())
    return path


def _spec(model_dir: Path, app: str):
    import yaml

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    example = json.loads((model_dir / "input_example.json").read_text())
    return spec_from_mlmodel(mlmodel, example, app=app)


class MlflowServe:
    """``mlflow models serve --env-manager local`` of one model on a loopback port."""

    def __init__(self, model_dir: Path, log: Path):
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HOME_MLOPS_"))}
        env["PATH"] = f"{MLFLOW.parent}{os.pathsep}{env.get('PATH', '')}"  # it execs the venv's uvicorn
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(MLFLOW), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(self.port), "-w", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                self.close()
                pytest.fail(f"mlflow models serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/ping", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.close()
                pytest.fail(f"mlflow models serve did not answer /ping: {log.read_text()[-2000:]}")
            time.sleep(0.3)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module", params=["iris", "mixed"])
def pair(request, tmp_path_factory):
    """(mlflow models serve URL, front door URL, the model's input example as a DataFrame) for one model."""
    import pandas as pd

    folder = tmp_path_factory.mktemp(f"g1-{request.param}")
    model_dir = (_save_iris if request.param == "iris" else _save_mixed)(folder)
    example = json.loads((model_dir / "input_example.json").read_text())
    frame = pd.DataFrame(example["data"], columns=example["columns"])
    reference = MlflowServe(model_dir, folder / "mlflow-serve.log")
    try:
        spec = _spec(model_dir, f"hmt-g1-{request.param}")
        types = {c.name: c.type for c in spec.inputs}
        backend = inprocess.InProcessBackend(model_dir, types)
        with serve(create_app(spec, backend=backend)) as url:
            yield reference.url, url, frame
    finally:
        reference.close()


def _bodies(frame) -> dict[str, tuple[bytes, str]]:
    records = json.loads(frame.to_json(orient="records"))
    split = json.loads(frame.to_json(orient="split", index=False))
    return {
        "dataframe_split": (json.dumps({"dataframe_split": split}).encode(), "application/json"),
        "dataframe_records": (json.dumps({"dataframe_records": records}).encode(), "application/json"),
        "inputs": (json.dumps({"inputs": records}).encode(), "application/json"),
        "instances": (json.dumps({"instances": records}).encode(), "application/json"),
        "csv": (frame.to_csv(index=False).encode(), "text/csv"),
        "csv_with_index": (frame.to_csv().encode(), "text/csv"),
    }


def test_invocations_answers_equal_mlflow_models_serve(pair):
    reference, front_door, frame = pair
    for name, (body, content_type) in _bodies(frame).items():
        headers = {"content-type": content_type}
        theirs = httpx.post(reference + "/invocations", content=body, headers=headers, timeout=30, trust_env=False)
        ours = httpx.post(front_door + "/invocations", content=body, headers=headers, timeout=30, trust_env=False)
        assert theirs.status_code == 200, (name, theirs.text[:500])
        assert ours.status_code == 200, (name, ours.text[:500])
        assert ours.json() == theirs.json(), name
        assert "server-timing" in ours.headers


def test_a_body_neither_takes_is_mlflows_bad_request_on_both(pair):
    reference, front_door, frame = pair
    wrong = {"dataframe_split": {"columns": list(frame.columns), "data": [["x"] * len(frame.columns)]}}
    if "city" in frame.columns:  # a string column takes "x": break a number column instead
        wrong = {"dataframe_split": {"columns": list(frame.columns), "data": [["x", "y", "paris"]]}}
    theirs = httpx.post(reference + "/invocations", json=wrong, timeout=30, trust_env=False)
    ours = httpx.post(front_door + "/invocations", json=wrong, timeout=30, trust_env=False)
    assert theirs.status_code == ours.status_code == 400, (theirs.text[:300], ours.text[:300])
    assert theirs.json()["error_code"] == ours.json()["error_code"] == "BAD_REQUEST"
    assert ours.json()["message"]


def test_python_m_gateway_serves_the_model_in_process_when_model_dir_is_set(tmp_path):
    """The standalone server's entry point: HOME_MLOPS_MODEL_DIR picks the in-process backend
    (no model server anywhere: HOME_MLOPS_UPSTREAM_URL points at a closed port)."""
    import shutil

    import mlflow.pyfunc
    import pandas as pd

    model_dir = _save_iris(tmp_path)
    package = Path(__file__).resolve().parents[2] / "pyhelpers" / "home_mlops" / "gateway"
    shutil.copytree(package, tmp_path / "app" / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    _spec(model_dir, "hmt-g1-standalone").save(tmp_path / "app" / "gateway-spec.json")
    example = json.loads((model_dir / "input_example.json").read_text())
    expected = mlflow.pyfunc.load_model(str(model_dir)).predict(
        pd.DataFrame(example["data"], columns=example["columns"])).tolist()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOME_MLOPS_")}
    env.update({"PYTHONPATH": str(tmp_path / "app"), "HOME_MLOPS_GATEWAY_HOST": "127.0.0.1",
                "HOME_MLOPS_GATEWAY_PORT": str(port), "HOME_MLOPS_MODEL_DIR": str(model_dir),
                "HOME_MLOPS_UPSTREAM_URL": "http://127.0.0.1:9", "HOME_MLOPS_GATEWAY_LOG_LEVEL": "warning"})
    proc = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=tmp_path / "app", env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            try:
                if httpx.get(url + "/readyz", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the standalone server never became ready"
            time.sleep(0.3)
        answer = httpx.post(url + "/invocations", json={"dataframe_split": example}, timeout=30, trust_env=False)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected}
    finally:
        proc.terminate()
        proc.wait(20)
