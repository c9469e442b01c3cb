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

# Heavy frameworks: kept only when the model's flavor uses them. MLflow records
# whatever was imported while training, and e.g. torch for a scikit-learn model
# would add a gigabyte to the image for nothing.
FRAMEWORKS = {
    "torch", "torchvision", "torchaudio", "tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib",
    "lightgbm", "xgboost", "xgboost-cpu", "catboost", "transformers", "tokenizers", "safetensors",
    "onnx", "onnxruntime", "statsmodels", "prophet", "sentence-transformers", "scikit-learn", "skops",
}
# Which frameworks each native flavor needs.
FLAVOR_PACKAGES: dict[str, set[str]] = {
    "sklearn": {"scikit-learn", "skops"},
    "pytorch": {"torch"},
    "tensorflow": {"tensorflow", "tensorflow-cpu", "keras"},
    "keras": {"keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch"},
    "lightgbm": {"lightgbm", "scikit-learn", "skops"},  # its sklearn API models are saved like sklearn ones
    "xgboost": {"xgboost", "xgboost-cpu", "scikit-learn", "skops"},
    "catboost": {"catboost"},
    "onnx": {"onnx", "onnxruntime"},
    "statsmodels": {"statsmodels"},
    "prophet": {"prophet"},
    "transformers": {"transformers", "tokenizers", "safetensors", "torch", "tensorflow"},
    "sentence_transformers": {"sentence-transformers", "transformers", "tokenizers", "safetensors", "torch"},
}
# Never needed to serve.
TRAINING_ONLY = {
    "pytest", "rich", "ipython", "ipykernel", "jupyter", "notebook", "black", "ruff",
    "mypy", "flake8", "pylint", "nvidia-ml-py", "psutil", "tqdm", "matplotlib",
    "seaborn", "home-mlops",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def clean_requirements(lines: list[str], flavors: list[str]) -> tuple[list[str], list[str]]:
    """Return (kept, dropped) requirement strings, kept ones pinned with '=='.

    Dropped: tools that only training uses, and ML frameworks the flavor does not load.

    A requirement with no pin gets the version installed here, if any; one
    that cannot be pinned is kept as written (the caller warns)."""
    wanted_frameworks: set[str] = set()
    for flavor in flavors:
        wanted_frameworks |= FLAVOR_PACKAGES.get(flavor, set())
    if any(f not in FLAVOR_PACKAGES and f != "python_function" for f in flavors):
        wanted_frameworks = set(FRAMEWORKS)  # a flavor we don't know: keep every framework
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
        if name in TRAINING_ONLY or (name in FRAMEWORKS and name not in wanted_frameworks):
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
