"""Resolve straight from the artifact store (NAS), with no tracking server at all.

MLFLOW_TRACKING_URI points at a closed port in every CLI call here: a success
proves the tracking server was not used.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import cli_env, run_cli

UNREACHABLE = "http://127.0.0.1:9"


# --------------------------------------------------------------------------- a small store, built in-process


@dataclass
class Store:
    tracking_uri: str
    artifact_root: Path | None  # None when the server owns the artifacts
    exp_a: str
    exp_b: str
    run3: str  # MLflow 3 logged model (name "model")
    model3: str
    run2: str  # MLflow 2-style: MLmodel under the run's artifacts/model
    run_two: str  # two logged models, "first" then "second"
    model_first: str
    model_second: str
    run_b: str  # a run of experiment B with no model


@contextlib.contextmanager
def tracking(uri: str):
    import mlflow

    old = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old)


def iris_model():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    return LogisticRegression(max_iter=300).fit(X, y), X


def build_store(tracking_uri: str, workdir: Path, artifact_root: Path | None = None, tag: str = "") -> Store:
    """Experiments A and B, and runs in both layouts, logged with real MLflow."""
    import mlflow
    from mlflow.tracking import MlflowClient

    model, X = iris_model()
    example = X.head(3)
    signature = mlflow.models.infer_signature(example, model.predict(example))
    # Explicit requirements: MLflow's inference runs a subprocess per model (tens of seconds).
    from importlib.metadata import version

    reqs = [f"mlflow=={version('mlflow')}", f"scikit-learn=={version('scikit-learn')}", f"pytest=={version('pytest')}", "rich"]
    kw = {"input_example": example, "signature": signature, "pip_requirements": reqs}
    with tracking(tracking_uri):
        if artifact_root is not None:
            # Same as the training helper: experiment artifacts at <root>/<experiment_id>.
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            sql = SqlAlchemyStore(tracking_uri, artifact_root.as_uri())
            exp_a = sql.create_experiment(f"a{tag}")
            exp_b = sql.create_experiment(f"b{tag}")
            sql.engine.dispose()
        else:
            client = MlflowClient(tracking_uri)
            exp_a = client.create_experiment(f"a{tag}")
            exp_b = client.create_experiment(f"b{tag}")
        with mlflow.start_run(experiment_id=exp_a) as run:
            info = mlflow.sklearn.log_model(model, name="model", **kw)
            run3, model3 = run.info.run_id, info.model_id
        with mlflow.start_run(experiment_id=exp_a) as run:
            folder = workdir / f"legacy-{run.info.run_id}"
            mlflow.sklearn.save_model(model, str(folder), **kw)
            mlflow.log_artifacts(str(folder), artifact_path="model")
            run2 = run.info.run_id
        with mlflow.start_run(experiment_id=exp_a) as run:
            first = mlflow.sklearn.log_model(model, name="first", **kw)
            second = mlflow.sklearn.log_model(model, name="second", **kw)
            run_two = run.info.run_id
        with mlflow.start_run(experiment_id=exp_b) as run:
            note = workdir / "note.txt"
            note.write_text("no model here\n")
            mlflow.log_artifact(str(note))
            run_b = run.info.run_id
    # The legacy run really has no logged model: its model lives under the run's artifacts.
    client = MlflowClient(tracking_uri)
    assert not client.search_logged_models(experiment_ids=[exp_a], filter_string=f"source_run_id = '{run2}'")
    return Store(
        tracking_uri, artifact_root, exp_a, exp_b, run3, model3, run2, run_two,
        first.model_id, second.model_id, run_b,
    )


def local_store(root: Path) -> Store:
    root.mkdir(parents=True, exist_ok=True)
    return build_store(f"sqlite:///{root / 'mlflow.db'}", root, root / "mlruns")


def resolve(env: dict, exp: str, run: str, out: Path, *extra: str, timeout: int = 600):
    proc = run_cli(
        ["resolve", "--experiment-id", exp, "--run-id", run, "--json", str(out), *extra], env=env, timeout=timeout
    )
    data = json.loads(out.read_text()) if out.is_file() else None
    return proc, data


def assert_resolved_from_bucket(proc, data: dict | None, state: Path, exp: str, model_id: str,
                                objects: list[str]) -> None:
    """A bucket NAS (gs://, s3://) resolve: the model's objects landed in the state's cache and
    load to the same predictions as the trained model. ``objects``: every object name in the bucket."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["source"] == "nas" and data["model_id"] == model_id
    assert data["model_uri"] == f"models:/{model_id}"
    assert data["artifact_uri"].endswith(f"{exp}/models/{model_id}/artifacts")
    local = Path(data["local_path"])
    assert local.is_relative_to(state)
    prefix = f"mlruns/{exp}/models/{model_id}/artifacts/"
    expected = {name[len(prefix):] for name in objects if name.startswith(prefix)}
    got = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert expected <= got and {"MLmodel", "model.skops"} <= got, (expected, got)

    import mlflow.pyfunc

    model, X = iris_model()
    assert list(mlflow.pyfunc.load_model(str(local)).predict(X.head(5))) == list(model.predict(X.head(5)))


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def store(local_sqlite_store) -> Store:
    return local_sqlite_store  # logged once per session (conftest.py)


def nas_env(state: Path) -> dict:
    return cli_env(state, MLFLOW_TRACKING_URI=UNREACHABLE)


# --------------------------------------------------------------------------- tests


@pytest.mark.timeout(600)
@pytest.mark.parametrize("form", ["path", "file-uri"])
def test_mlflow3_logged_model_from_nas(form, store, state, tmp_path):
    nas = str(store.artifact_root) if form == "path" else store.artifact_root.as_uri()
    proc, data = resolve(nas_env(state), store.exp_a, store.run3, tmp_path / "r.json", "--nas", nas)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["source"] == "nas"
    assert data["model_id"] == store.model3
    assert data["model_uri"] == f"models:/{store.model3}"
    assert data["run_id"] == store.run3 and data["experiment_id"] == store.exp_a
    assert "sklearn" in data["flavors"]
    local = Path(data["local_path"])
    assert (local / "MLmodel").is_file() and local.is_relative_to(state)
    src = store.artifact_root / store.exp_a / "models" / store.model3 / "artifacts"
    for f in src.iterdir():
        assert (local / f.name).read_bytes() == f.read_bytes()
    assert "127.0.0.1:9" not in proc.stderr  # never talked about the tracking URI


@pytest.mark.timeout(600)
def test_mlflow2_run_artifact_layout_from_nas(store, state, tmp_path):
    nas = store.artifact_root.as_uri()
    proc, data = resolve(nas_env(state), store.exp_a, store.run2, tmp_path / "r.json", "--nas", nas)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] is None
    assert data["model_uri"] == f"runs:/{store.run2}/model"
    assert data["model_name"] == "model"
    local = Path(data["local_path"])
    assert (local / "MLmodel").is_file()
    import mlflow.pyfunc

    model, X = iris_model()
    got = mlflow.pyfunc.load_model(str(local)).predict(X.head(5))
    assert list(got) == list(model.predict(X.head(5)))


@pytest.mark.timeout(600)
def test_nas_two_models_deterministic(store, state, tmp_path):
    env = nas_env(state)
    nas = str(store.artifact_root)
    for i in range(2):  # same answer every time: the newest ("second")
        proc, data = resolve(env, store.exp_a, store.run_two, tmp_path / f"{i}.json", "--nas", nas)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert data["model_id"] == store.model_second
        assert "--model-name" in flat(proc.stderr)  # the user is told there is a choice


@pytest.mark.timeout(600)
def test_nas_model_name_picks_the_other(store, state, tmp_path):
    proc, data = resolve(
        nas_env(state), store.exp_a, store.run_two, tmp_path / "b.json", "--nas", str(store.artifact_root),
        "--model-name", store.model_first,
    )
    # MLflow 3 does not write a logged model's name into MLmodel: on a NAS, pick by model id.
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] == store.model_first


@pytest.mark.timeout(600)
@pytest.mark.parametrize("run_attr", ["run3", "run2"])
def test_nas_wrong_experiment(run_attr, store, state, tmp_path):
    run = getattr(store, run_attr)
    proc, data = resolve(nas_env(state), store.exp_b, run, tmp_path / "r.json", "--nas", str(store.artifact_root))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    message = flat(proc.stderr)
    assert f"experiment {store.exp_a}" in message and f"experiment {store.exp_b}" in message, message
    assert data["exit_code"] == 3 and store.exp_a in data["error"] and store.exp_b in data["error"]
    assert not any(Path(state, "cache", "models").glob("m-*"))


@pytest.mark.timeout(600)
def test_nas_unknown_run(store, state, tmp_path):
    unknown = "0123456789abcdef0123456789abcdef"
    proc, data = resolve(nas_env(state), store.exp_a, unknown, tmp_path / "r.json", "--nas", str(store.artifact_root))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert unknown in flat(proc.stderr)
    assert data["ok"] is False and data["exit_code"] == 3


@pytest.mark.timeout(600)
def test_nas_unknown_experiment(store, state, tmp_path):
    proc, _ = resolve(nas_env(state), "987654", store.run3, tmp_path / "r.json", "--nas", str(store.artifact_root))
    assert proc.returncode == 3, proc.stderr[-3000:]
    message = flat(proc.stderr)
    assert "987654" in message and store.exp_a in message  # lists the experiments that do exist


@pytest.mark.timeout(600)
def test_nas_missing(state, tmp_path):
    missing = tmp_path / "no-such-share" / "mlruns"
    proc, data = resolve(nas_env(state), "1", "0123456789abcdef0123456789abcdef", tmp_path / "r.json", "--nas", str(missing))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    message = flat(proc.stderr)
    assert str(missing) in message and "does not exist" in message
    assert data["exit_code"] == 3


@pytest.mark.timeout(900)
def test_nas_layout_of_a_training_script(trained_run, state, tmp_path):
    """A real training script's run, read from its artifact folder with no tracking server."""
    run = trained_run("tabular-iris-multi-classifier")
    proc, data = resolve(nas_env(state), run.experiment_id, run.run_id, tmp_path / "r.json", "--nas", run.artifact_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] == run.model_id and data["source"] == "nas"
    assert shutil.os.path.isfile(Path(data["local_path"]) / "MLmodel")


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "form",
    [
        "path",
        "file-uri",
    ],
)
def test_nas_path_with_allowed_special_characters(form, store, state, tmp_path):
    """validate_nas accepts '@+=,' in a path segment: such a share must resolve too."""
    share = tmp_path / "team@nas+x=1,2" / "mlruns"
    shutil.copytree(store.artifact_root / store.exp_a, share / store.exp_a)
    nas = str(share) if form == "path" else f"file://{share}"
    proc, data = resolve(nas_env(state), store.exp_a, store.run3, tmp_path / "r.json", "--nas", nas)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["model_id"] == store.model3
    assert (Path(data["local_path"]) / "MLmodel").is_file()


@pytest.mark.timeout(900)
def test_nas_model_cannot_poison_the_tracking_entry(store, state, tmp_path):
    """Issue 9: a NAS model claiming a tracking-server model's id (same folder name, other
    content) fills its own cache entry; the tracking-server resolve never uses it."""
    forged_root = tmp_path / "forged-nas"
    source = store.artifact_root / store.exp_a / "models" / store.model3
    forged = forged_root / store.exp_a / "models" / store.model3
    shutil.copytree(source, forged)
    (forged / "artifacts" / "planted.txt").write_text("from the NAS author\n")
    proc, nas = resolve(nas_env(state), store.exp_a, store.run3, tmp_path / "n.json", "--nas", str(forged_root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert nas["model_id"] == store.model3 and (Path(nas["local_path"]) / "planted.txt").is_file()

    tracking_env = cli_env(state, MLFLOW_TRACKING_URI=store.tracking_uri)
    proc, tracked = resolve(tracking_env, store.exp_a, store.run3, tmp_path / "t.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tracked["cache_hit"] is False
    assert tracked["local_path"] != nas["local_path"]
    assert not (Path(tracked["local_path"]) / "planted.txt").exists()
    assert tracked["content_digest"] != nas["content_digest"]


@pytest.mark.timeout(900)
def test_tampered_cache_entry_is_fetched_again(store, state, tmp_path):
    nas = str(store.artifact_root)
    proc, first = resolve(nas_env(state), store.exp_a, store.run3, tmp_path / "1.json", "--nas", nas)
    assert proc.returncode == 0, proc.stderr[-3000:]
    example = Path(first["local_path"]) / "input_example.json"
    original = example.read_bytes()
    example.write_bytes(original.replace(b"5", b"9"))  # same names, other bytes: a forged entry
    proc, second = resolve(nas_env(state), store.exp_a, store.run3, tmp_path / "2.json", "--nas", nas)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert second["cache_hit"] is False  # dropped and downloaded again, not trusted
    assert example.read_bytes() == original
    assert second["content_digest"] == first["content_digest"]
