"""What the example training scripts share: where MLflow writes, and how to log.

`set_mlflow_backend_store_uri()` keeps the seed's name. It points MLflow at
MLFLOW_TRACKING_URI when set, else at the embedded default: a sqlite file and
a local artifact folder in the state folder (no server needed).
"""
from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from home_mlops import env, settings
from home_mlops.errors import BadInput, NotFound
from home_mlops.extras import missing_dependency

EXAMPLE_APPS = (
    "tabular-iris-multi-classifier",
    "tabular-iris-lightgbm",
    "tabular-iris-xgboost",
    "tabular-iris-pytorch",
    "tabular-diabetes-regressor",
)


def set_mlflow_backend_store_uri(uri: str | None = None) -> str:
    uri = settings.tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """The id of experiment `name`, created if needed, and made the active one.

    With the embedded sqlite default, MLflow would put artifacts in ./mlruns of
    whatever folder the script runs from; we create the experiment through a
    store whose default root is the state folder, so the layout is
    <state>/mlruns/<experiment_id>/..., which is what `NAS` resolution reads."""
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        exp_id = existing.experiment_id
    elif mlflow.get_tracking_uri().startswith("sqlite:"):
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        root = env.ARTIFACT_ROOT.get() or settings.default_artifact_root().as_uri()
        exp_id = SqlAlchemyStore(mlflow.get_tracking_uri(), root).create_experiment(name)
    else:
        exp_id = client.create_experiment(name)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@dataclass
class TrainedRun:
    experiment_id: str
    run_id: str
    model_id: str | None


def report(run: mlflow.ActiveRun, model_info) -> TrainedRun:
    """Print the ids a user types into Jenkins (stdout: scripts can parse it)."""
    trained = TrainedRun(run.info.experiment_id, run.info.run_id, getattr(model_info, "model_id", None))
    print(f"EXPERIMENT_ID={trained.experiment_id}")
    print(f"RUN_ID={trained.run_id}")
    if trained.model_id:
        print(f"MODEL_ID={trained.model_id}")
    return trained


def training_script(app: str) -> Path:
    root = settings.project_root()
    candidates = [Path.cwd() / "training" / app / "train.py"]
    if root:
        candidates.insert(0, root / "training" / app / "train.py")
    for path in candidates:
        if path.is_file():
            return path
    known = ", ".join(EXAMPLE_APPS)
    raise NotFound(
        f"no training script for app {app!r}",
        f"training/{app}/train.py (example apps: {known})",
        "add a training script, or run from the repository root",
    )


def run_training(app: str, argv: list[str] | None = None) -> None:
    if "/" in app or app.startswith("."):
        raise BadInput(f"app {app!r} is not a folder name under training/")
    script = training_script(app)
    old_argv = sys.argv
    sys.argv = [str(script), *(argv or [])]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except ModuleNotFoundError as exc:  # the example trainers' frameworks are the [train] / [torch] extras
        raise missing_dependency(exc, f"training script {script}") from None
    finally:
        sys.argv = old_argv


def prepare(app: str, dataset: str, seed: int):
    """What every example script does first: MLflow store, the app's experiment, a split.

    Returns X_train, X_test, y_train, y_test as pandas objects (scikit-learn's
    bundled data sets: nothing is downloaded)."""
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.model_selection import train_test_split

    set_mlflow_backend_store_uri()
    ensure_experiment(app)
    loader = {"iris": load_iris, "diabetes": load_diabetes}[dataset]
    X, y = loader(return_X_y=True, as_frame=True)
    return train_test_split(X, y, test_size=0.2, random_state=seed)


def log_model(run: mlflow.ActiveRun, flavor, model, X_example, predictions, **kwargs) -> TrainedRun:
    """Log with a signature and an input example (what serving validates against), then report."""
    info = flavor.log_model(
        model,
        name="model",
        input_example=X_example.head(3),
        signature=mlflow.models.infer_signature(X_example, predictions),
        **kwargs,
    )
    return report(run, info)
