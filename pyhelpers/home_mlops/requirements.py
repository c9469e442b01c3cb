"""Turn the requirements MLflow captured at training time into what serving needs.

MLflow records every package it saw imported in the training process (pytest,
rich, even torch for a scikit-learn model were seen). We keep what the model's
flavor needs, drop the rest, and pin everything that stays, so the image
serves with the versions that trained the model.
"""
from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# Always needed to load a pyfunc model.
_BASE = {"mlflow", "mlflow-skinny", "numpy", "pandas", "cloudpickle", "pyarrow", "scipy"}
# What each native flavor needs on top of the base (its own package and helpers).
FLAVOR_PACKAGES: dict[str, set[str]] = {
    "sklearn": {"scikit-learn", "skops", "joblib", "threadpoolctl"},
    "lightgbm": {"lightgbm", "scikit-learn", "joblib", "threadpoolctl"},
    "xgboost": {"xgboost", "xgboost-cpu", "scikit-learn", "joblib", "threadpoolctl"},
    "pytorch": {"torch"},
    "tensorflow": {"tensorflow", "keras"},
    "keras": {"keras", "tensorflow"},
    "onnx": {"onnx", "onnxruntime"},
    "statsmodels": {"statsmodels"},
    "catboost": {"catboost"},
    "prophet": {"prophet"},
    "transformers": {"transformers", "torch", "tokenizers", "safetensors"},
}
# Never needed to serve: dropped for flavors we don't know, where we keep the rest.
TRAINING_ONLY = {
    "pytest", "rich", "ipython", "ipykernel", "jupyter", "notebook", "black", "ruff",
    "mypy", "flake8", "pylint", "nvidia-ml-py", "psutil", "tqdm", "matplotlib",
    "seaborn", "mlflow-tracing", "home-mlops",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def clean_requirements(lines: list[str], flavors: list[str]) -> tuple[list[str], list[str]]:
    """Return (kept, dropped) requirement strings, kept ones pinned with '=='.

    A requirement with no pin gets the version installed here, if any; one
    that cannot be pinned is kept as written (the caller warns)."""
    native = [f for f in flavors if f != "python_function"]
    allowed: set[str] | None = set(_BASE)
    for flavor in native:
        if flavor not in FLAVOR_PACKAGES:
            allowed = None  # unknown flavor: keep everything but the denylist
            break
        allowed |= FLAVOR_PACKAGES[flavor]
    kept: list[str] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            if line:
                dropped.append(line)
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            dropped.append(line)
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        if name in TRAINING_ONLY or (allowed is not None and name not in allowed):
            dropped.append(str(req))
            continue
        kept.append(_pin(req))
    return sorted(kept, key=str.lower), dropped


def _pin(req: Requirement) -> str:
    pins = [s for s in req.specifier if s.operator in ("==", "===")]
    if pins:
        version = pins[0].version.split("+", 1)[0]
        return f"{req.name}=={version}"
    installed = _installed_version(req.name)
    if installed and (not req.specifier or req.specifier.contains(installed, prereleases=True)):
        return f"{req.name}=={installed.split('+', 1)[0]}"
    return str(req)
