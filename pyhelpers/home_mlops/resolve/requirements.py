"""Turn the requirements MLflow captured at training time into what serving needs.

MLflow records every package it saw imported in the training process (pytest,
rich, even torch for a scikit-learn model were seen). We keep what the model's
flavor needs, drop the rest, and pin everything that stays, so the image
serves with the versions that trained the model.
"""
from __future__ import annotations

import re
from importlib import metadata
from typing import NamedTuple

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from home_mlops.errors import BadInput

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


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


class CleanRequirements(NamedTuple):
    kept: list[str]  # pinned '==' where a version is known, sorted
    dropped: list[str]  # training-only tools and frameworks the flavor does not load
    unpinned: list[str]  # names the model did not pin (the image lock pins them, with hashes)


# A name pip would read as a local file (`pkg.whl`, `pkg.tar.gz`): refused like a path.
_ARCHIVE = re.compile(r"\.(whl|zip|tar|tgz|tar\.gz|tar\.bz2|tbz|tar\.xz|txz|egg)$", re.I)
# Printable ASCII without '$' (pip expands ${VAR} in requirement files) or '\\' (line continuation).
_SAFE_LINE = re.compile(r"^[\x20-\x7e]*$")
# pip's own rule: '#' at the start or after blanks starts a comment ('numpy#x' is not one).
_COMMENT = re.compile(r"(^|\s+)#.*$")


def _refuse(source: str, number: int, line: str, why: str) -> BadInput:
    shown = line if len(line) <= 120 else line[:117] + "..."
    return BadInput(
        f"{source} line {number}: {shown!r} is {why}; model requirements may only name packages from the index",
        "one 'name[extras] <version specifiers> [; marker]' per line, e.g. scikit-learn==1.5.2 "
        "(no URLs, paths, VCS links, editables or pip options: those run code on the build host)",
        "log the model again with pip_requirements that name published packages "
        "(publish private code as a wheel on the package index)",
    )


def parse_line(raw: str, number: int, source: str) -> Requirement | None:
    """One line of a model's requirements.txt as a Requirement, None for blank/comment lines.

    Refuses (BadInput) everything pip would fetch from somewhere other than the
    index or read as an instruction: direct references, paths, VCS URLs,
    editables, option lines, and lines that do not parse."""
    line = _COMMENT.sub("", raw).strip()
    if not line:
        return None
    if line.startswith("-"):
        why = "an editable install" if line.startswith(("-e", "--editable")) else "a pip option line"
        raise _refuse(source, number, line, why)
    if not _SAFE_LINE.match(line) or "$" in line or "\\" in line:
        raise _refuse(source, number, line, "not plain text (control characters, '$' or '\\')")
    try:
        req = Requirement(line)
    except InvalidRequirement:
        kind = "a VCS URL" if re.match(r"^(git|hg|svn|bzr)\+", line) else (
            "a path or URL" if "/" in line else "not a valid requirement")
        raise _refuse(source, number, line, kind) from None
    if req.url:
        raise _refuse(source, number, line, "a direct reference (name @ url)")
    if _ARCHIVE.search(req.name):
        raise _refuse(source, number, line, "a file name (pip would install the local file)")
    return req


def clean_requirements(lines: list[str], flavors: list[str], source: str = "requirements.txt") -> CleanRequirements:
    """Keep what serving needs, pinned with '=='; refuse lines that could run code.

    Dropped: tools that only training uses, and ML frameworks the flavor does not load.

    A requirement with no pin gets the version installed here, if any; one
    that cannot be pinned is kept as written (the lock pins it, with hashes).
    ``source`` names the model file in errors."""
    wanted_frameworks: set[str] = set()
    for flavor in flavors:
        wanted_frameworks |= FLAVOR_PACKAGES.get(flavor, set())
    if any(f not in FLAVOR_PACKAGES and f != "python_function" for f in flavors):
        wanted_frameworks = set(FRAMEWORKS)  # a flavor we don't know: keep every framework
    kept: list[str] = []
    dropped: list[str] = []
    unpinned: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        req = parse_line(raw, number, source)
        if req is None:
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        if name in TRAINING_ONLY or (name in FRAMEWORKS and name not in wanted_frameworks):
            dropped.append(str(req))
            continue
        if not any(s.operator in ("==", "===") for s in req.specifier):
            unpinned.append(req.name)
        kept.append(_pin(req))
    return CleanRequirements(sorted(kept, key=str.lower), dropped, sorted(unpinned, key=str.lower))


def _pin(req: Requirement) -> str:
    pins = [s for s in req.specifier if s.operator in ("==", "===")]
    if pins:
        version = pins[0].version.split("+", 1)[0]
        return f"{req.name}=={version}"
    installed = _installed_version(req.name)
    if installed and (not req.specifier or req.specifier.contains(installed, prereleases=True)):
        return f"{req.name}=={installed.split('+', 1)[0]}"
    return str(req)
