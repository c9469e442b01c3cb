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
    """The saved input example as records, for smoke tests and docs."""
    info = mlmodel.get("saved_input_example_info") or {}
    path = model_dir / info.get("artifact_path", "input_example.json")
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "columns" in data and "data" in data:
        return [dict(zip(data["columns"], row)) for row in data["data"]]
    if isinstance(data, dict) and "dataframe_split" in data:
        split = data["dataframe_split"]
        return [dict(zip(split["columns"], row)) for row in split["data"]]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    return None
