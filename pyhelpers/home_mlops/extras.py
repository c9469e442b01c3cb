"""Optional dependencies: which extra of home-mlops brings which module, and the error when one is missing.

The core install reads runs from MLflow, builds and deploys. A gs:// or s3:// NAS, the
Jenkins commands, the MLflow server and the example trainers need more; each is an
extra in pyproject.toml. A missing one is the user's to fix (exit 2), named with the
command that installs it: never "not found", never a traceback.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from home_mlops.errors import BadInput

#: top-level module -> the extra that installs it (pyproject.toml [project.optional-dependencies])
EXTRA_OF_MODULE = {
    "boto3": "s3", "botocore": "s3", "s3transfer": "s3",
    "google": "gcs",  # google.cloud.storage, google.api_core, google.auth
    "jenkins": "jenkins", "jenkins_jobs": "jenkins",
    "sklearn": "train", "lightgbm": "train", "xgboost": "train",
    "torch": "torch",
}


class MissingDependency(BadInput):
    """A Python module home-mlops (or the model) needs is not installed: exit 2."""


def install_hint(extra: str) -> str:
    return (f"install the extra: pip install 'home-mlops[{extra}]' "
            f"(in a checkout: .venv/bin/pip install -e '.[{extra}]'; scripts/setup.sh installs every extra)")


def missing_dependency(error: ModuleNotFoundError, needed_for: str) -> MissingDependency:
    """The user-facing error for a module that could not be imported while doing ``needed_for``."""
    module = error.name or "a module"
    extra = EXTRA_OF_MODULE.get(module.split(".")[0])
    if extra:
        return MissingDependency(
            f"{needed_for} needs the Python module {module!r}, which is not installed",
            f"home-mlops installed with its [{extra}] extra",
            install_hint(extra),
        )
    return MissingDependency(
        f"{needed_for} needs the Python module {module!r}, which is not installed",
        f"{module} importable in {_python()}",
        f"install the package that provides {module!r} into that environment (for a model: "
        "list it in the model's requirements)",
    )


def require(module: str, needed_for: str) -> ModuleType:
    """Import ``module`` or raise MissingDependency naming its extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise missing_dependency(exc, needed_for) from None


def require_installed(module: str, needed_for: str) -> None:
    """Raise MissingDependency unless ``module`` is installed, without importing it (for a tool run
    as ``python -m module``, or to fail before a slow step)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise missing_dependency(ModuleNotFoundError(f"No module named {module!r}", name=module), needed_for)


def _python() -> str:
    import sys

    return sys.executable
