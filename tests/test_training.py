"""Every example training script runs, and its run resolves through `home-mlops resolve --json`.

Proves: the five scripts log an MLflow 3 model; resolve finds it by experiment id +
run id through the (sqlite) tracking store, describes it (flavors, column signature,
python version, clean pinned requirements) and puts a loadable copy in the cache
that predicts what the model computes in this process.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import cli_env, run_cli

NATIVE = {
    "tabular-iris-multi-classifier": "sklearn",
    "tabular-iris-lightgbm": "lightgbm",
    "tabular-iris-xgboost": "xgboost",
    "tabular-iris-pytorch": "pytorch",
    "tabular-diabetes-regressor": "sklearn",
}
APPS = [
    "tabular-iris-multi-classifier",
    "tabular-iris-lightgbm",
    "tabular-iris-xgboost",
    pytest.param("tabular-iris-pytorch", marks=pytest.mark.slow),
    "tabular-diabetes-regressor",
]


def resolve_json(env: dict, experiment_id: str, run_id: str, out: Path, *extra: str):
    proc = run_cli(
        ["resolve", "--experiment-id", experiment_id, "--run-id", run_id, "--json", str(out), *extra],
        env=env, timeout=600,
    )
    data = json.loads(out.read_text()) if out.is_file() else None
    return proc, data


def _test_split(app: str):
    """The scripts' own split (seed 42): the input example is X_test.head(3)."""
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.model_selection import train_test_split

    loader = load_diabetes if "diabetes" in app else load_iris
    X, y = loader(return_X_y=True, as_frame=True)
    return train_test_split(X, y, test_size=0.2, random_state=42)


def _native_predict(flavor: str, local: str, frame: pd.DataFrame) -> np.ndarray:
    import mlflow

    if flavor == "pytorch":
        import torch

        model = mlflow.pytorch.load_model(local)
        with torch.no_grad():
            return model(torch.tensor(frame.values.astype(np.float32))).numpy()
    module = getattr(mlflow, flavor)
    return np.asarray(module.load_model(local).predict(frame))


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("app", APPS)
def test_train_and_resolve(app, trained_run, state, tmp_path):
    run = trained_run(app)
    assert re.fullmatch(r"[0-9]+", run.experiment_id)
    assert re.fullmatch(r"[0-9a-f]{32}", run.run_id)
    assert run.model_id and run.model_id.startswith("m-")

    env = cli_env(state, MLFLOW_TRACKING_URI=run.tracking_uri)
    proc, data = resolve_json(env, run.experiment_id, run.run_id, tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""  # human output goes to stderr only

    assert data["command"] == "resolve" and data["ok"] is True
    assert data["experiment_id"] == run.experiment_id
    assert data["run_id"] == run.run_id
    assert data["model_id"] == run.model_id
    assert data["model_uri"] == f"models:/{run.model_id}"
    assert re.fullmatch(r"models:/m-[0-9a-f]{32}", data["model_uri"])
    assert data["source"] == "tracking"
    assert data["cache_hit"] is False

    flavor = NATIVE[app]
    assert flavor in data["flavors"] and "python_function" in data["flavors"]

    signature = data["signature"]
    assert isinstance(signature["inputs"], list) and signature["inputs"]
    assert all(col.get("name") for col in signature["inputs"]), signature  # column-based, not tensor
    X_train, X_test, y_train, y_test = _test_split(app)
    assert [c["name"] for c in signature["inputs"]] == list(X_test.columns)

    assert re.fullmatch(r"3\.11\.\d+", data["python_version"] or ""), data["python_version"]
    assert data["python_version"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")

    reqs = data["requirements"]
    assert reqs and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^=\s,;]*", r) for r in reqs), reqs
    req_names = {r.split("==")[0].lower() for r in reqs}
    assert not req_names & {"pytest", "rich"}, reqs
    assert "mlflow" in req_names
    expected_pkg = {"sklearn": "scikit-learn", "lightgbm": "lightgbm", "xgboost": "xgboost", "pytorch": "torch"}[flavor]
    assert expected_pkg in req_names, reqs
    if flavor != "pytorch":
        assert "torch" not in req_names, reqs

    local = Path(data["local_path"])
    assert (local / "MLmodel").is_file()
    assert local.is_relative_to(state)  # the cache of this state folder

    # The input example is the scripts' X_test.head(3).
    example = pd.DataFrame(data["input_example"])[list(X_test.columns)]
    np.testing.assert_allclose(example.values, X_test.head(3).values, rtol=1e-6)
    # Cast to the signature's column types (the pytorch model takes float32).
    types = {"float": np.float32, "double": np.float64, "long": np.int64, "integer": np.int32}
    example = example.astype({c["name"]: types[c["type"]] for c in signature["inputs"] if c["type"] in types})

    import mlflow.pyfunc

    served = np.asarray(mlflow.pyfunc.load_model(str(local)).predict(example)).reshape(-1)
    native = _native_predict(flavor, str(local), example)
    np.testing.assert_allclose(served, np.asarray(native).reshape(-1), rtol=1e-5)
    if "iris" in app:
        # Each iris model gets these three easy rows right.
        assert served.astype(int).tolist() == y_test.head(3).tolist()
    else:
        from sklearn.ensemble import RandomForestRegressor

        again = RandomForestRegressor(n_estimators=30, max_depth=6, random_state=42).fit(X_train, y_train)
        np.testing.assert_allclose(served, again.predict(X_test.head(3)), rtol=1e-6)
