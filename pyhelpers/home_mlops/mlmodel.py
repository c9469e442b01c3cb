"""Reading what MLflow writes next to a model: MLmodel, python_env.yaml, requirements."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .errors import NotFound


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "MLmodel"
    if not path.is_file():
        raise NotFound(f"no MLmodel file in {model_dir}", "an MLflow model folder")
    return yaml.safe_load(path.read_text()) or {}


def parse_signature(mlmodel: dict[str, Any]) -> dict[str, Any] | None:
    """MLflow stores inputs/outputs as JSON strings inside the YAML: decode them."""
    signature = mlmodel.get("signature")
    if not signature:
        return None
    decoded = {}
    for part in ("inputs", "outputs", "params"):
        value = signature.get(part)
        decoded[part] = json.loads(value) if isinstance(value, str) else value
    return decoded


def python_version(model_dir: Path, mlmodel: dict[str, Any]) -> str | None:
    env_file = model_dir / "python_env.yaml"
    if env_file.is_file():
        env = yaml.safe_load(env_file.read_text()) or {}
        if env.get("python"):
            return str(env["python"])
    return mlmodel.get("flavors", {}).get("python_function", {}).get("python_version")


def requirement_lines(model_dir: Path) -> list[str]:
    path = model_dir / "requirements.txt"
    return path.read_text().splitlines() if path.is_file() else []


def flavors(mlmodel: dict[str, Any]) -> list[str]:
    return sorted((mlmodel.get("flavors") or {}).keys())


def input_example(model_dir: Path, mlmodel: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The saved input example as records, for smoke tests and docs (None for tensors)."""
    from .gateway.context import read_input_example
    from .gateway.spec import records_from_example

    signature = parse_signature(mlmodel) or {}
    names = [c["name"] for c in signature.get("inputs") or [] if isinstance(c, dict) and "name" in c]
    return records_from_example(read_input_example(model_dir, mlmodel), names or None)
