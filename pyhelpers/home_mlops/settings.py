"""Where home-mlops keeps its state, and the embedded defaults.

Everything lives under one state folder so that `make clean` or a test's
temporary folder holds all of it: the local MLflow store, the model cache,
the BentoML home and the build folders.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from home_mlops import env

STATE_ENV = env.HOME.name


def project_root() -> Path | None:
    """The checkout this package was installed from (editable install), if any."""
    here = Path(__file__).resolve().parent
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "pyhelpers").is_dir():
            return parent
    return None


def state_dir() -> Path:
    explicit = env.HOME.get()
    if explicit:
        path = Path(explicit).expanduser()
    else:
        root = project_root()
        path = root / "home-mlops-state" if root else Path.home() / ".local/share/home-mlops"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def default_tracking_uri() -> str:
    return f"sqlite:///{state_dir() / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return state_dir() / "mlruns"


def cache_dir() -> Path:
    path = state_dir() / "cache" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def builds_dir() -> Path:
    """Build folders. BentoML (1.4.34+) refuses a build context whose absolute path has a
    hidden component ("Accessing hidden files is not allowed"), so a hidden state folder
    (~/.local/share/...) builds under /var/tmp instead."""
    state = state_dir()
    if any(part.startswith(".") for part in state.parts):
        path = Path(tempfile.gettempdir() if not Path("/var/tmp").is_dir() else "/var/tmp") / f"home-mlops-builds-{os.getuid()}"
    else:
        path = state / "builds"
    path.mkdir(parents=True, exist_ok=True)
    return path


def bentoml_home() -> Path:
    return Path(env.BENTOML_HOME.get() or state_dir() / "bentoml")


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or env.MLFLOW_TRACKING_URI.get() or default_tracking_uri()
