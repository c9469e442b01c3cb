"""Reading what MLflow writes next to a model: MLmodel, python_env.yaml, requirements."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from home_mlops.errors import BadInput, NotFound
from home_mlops.params import validate_run_id

MODEL_ID = re.compile(r"m-[0-9a-f]{32}")
_PYTHON_VERSION = re.compile(r"[0-9]{1,2}\.[0-9]{1,3}(?:\.[0-9]{1,3})?")
# Keys of a flavor's configuration that name a file or folder of the model (MLflow's flavors).
PATH_KEYS = frozenset({
    "data", "model_path", "code", "pickled_model", "model_data", "saved_model_dir", "model_file",
    "model_code_path", "path", "conda", "virtualenv", "env", "python_env", "python_model", "model_binary",
})


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    """The MLmodel as MLflow reads it (``mlflow.models.Model``), as the dict MLflow writes.

    MLflow's own reader decides what the fields mean (the signature is parsed by
    ``ModelSignature``, so a signature the model server would refuse is refused here);
    what it cannot read is exit 2 naming the file, never a traceback."""
    path = Path(model_dir) / "MLmodel"
    if not path.is_file():
        raise NotFound(f"no MLmodel file in {model_dir}", "an MLflow model folder")
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path} is not valid YAML: {str(exc)[:200]}", "MLflow's MLmodel file") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and k.isidentifier() for k in data):
        raise BadInput(f"{path} is not a mapping of MLmodel fields", "MLflow's MLmodel file (flavors:, run_id:, ...)")
    from mlflow.models import Model

    try:
        # from_dict on what was just read: Model.load would read the file again, in the locale's encoding
        return Model.from_dict(data).to_dict()
    except Exception as exc:  # noqa: BLE001 - MlflowException, TypeError, ValueError: all "MLflow cannot read it"
        raise BadInput(
            f"{path} is not an MLmodel MLflow can read: {type(exc).__name__}: {str(exc)[:200]}",
            "MLflow's MLmodel file (flavors:, signature: with inputs/outputs as MLflow writes them)",
            "log the model again with MLflow; never edit MLmodel by hand",
        ) from None


def model_file(model_dir: Path, relative: Any, field: str) -> Path:
    """``model_dir/relative``, refused unless it stays inside the model folder once symlinks are resolved.

    ``field`` names the MLmodel field that gave the path, for the error."""
    bad = BadInput(
        f"MLmodel field {field} = {str(relative)[:200]!r} points outside the model folder",
        "a path relative to the model folder, without '..' or a symlink leading out",
        "log the model again with MLflow (it writes these paths itself); never edit them by hand",
    )
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise bad
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or relative.startswith("\\"):
        raise bad
    base = Path(model_dir).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise bad
    return target


def _named_paths(value: Any, field: str) -> Iterator[tuple[str, Any]]:
    """(field, path) for every path a flavor configuration names, nested ones included."""
    if isinstance(value, dict):
        for key, inner in value.items():
            name = f"{field}.{key}"
            if key in PATH_KEYS and isinstance(inner, (str, int, float)) and not isinstance(inner, bool):
                yield name, str(inner)
            elif key in PATH_KEYS and isinstance(inner, list):
                yield from ((f"{name}[{i}]", str(v)) for i, v in enumerate(inner) if isinstance(v, str))
            else:
                yield from _named_paths(inner, name)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _named_paths(inner, f"{field}[{i}]")


def check_model_paths(model_dir: Path, mlmodel: dict[str, Any]) -> None:
    """Every file the MLmodel names stays inside the model folder (exit 2 naming the field)."""
    info = mlmodel.get("saved_input_example_info") or {}
    if not isinstance(info, dict):
        raise BadInput("MLmodel field saved_input_example_info is not a mapping", "MLflow's input example record")
    for key in ("artifact_path", "serving_input_path"):
        if info.get(key) is not None:
            model_file(model_dir, info[key], f"saved_input_example_info.{key}")
    flavors_cfg = mlmodel.get("flavors") or {}
    if not isinstance(flavors_cfg, dict):
        raise BadInput("MLmodel field flavors is not a mapping", "flavor name -> its configuration")
    for field, path in _named_paths(flavors_cfg, "flavors"):
        if "://" in path and not path.startswith("file:"):
            continue  # a remote URI recorded for provenance (e.g. an artifact's source), never read here
        model_file(model_dir, path, field)


def checked_id(mlmodel: dict[str, Any], field: str) -> str | None:
    """``model_id``/``run_id`` from the MLmodel, validated like the job parameters (None when absent)."""
    value = mlmodel.get(field)
    if value is None or value == "":
        return None
    text = str(value)
    if field == "run_id":
        try:
            return validate_run_id(text)
        except BadInput:
            pass
    elif MODEL_ID.fullmatch(text):
        return text
    raise BadInput(
        f"MLmodel field {field} = {text[:80]!r} is not a valid id",
        "m-<32 hex> for model_id" if field == "model_id" else "32 lowercase hexadecimal characters",
        "the model folder was edited by hand or is not an MLflow model: log it again",
    )


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
    pyfunc = (mlmodel.get("flavors") or {}).get("python_function") or {}
    named = (pyfunc.get("env") or {}).get("virtualenv") if isinstance(pyfunc.get("env"), dict) else None
    env_file = model_file(model_dir, named or "python_env.yaml", "flavors.python_function.env.virtualenv")
    if env_file.is_file():
        try:
            env = yaml.safe_load(env_file.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError):
            env = {}
        if isinstance(env, dict) and _PYTHON_VERSION.fullmatch(str(env.get("python") or "")):
            return str(env["python"])
    version = str(pyfunc.get("python_version") or "")
    return version if _PYTHON_VERSION.fullmatch(version) else None


def requirement_lines(model_dir: Path) -> list[str]:
    path = model_dir / "requirements.txt"
    if not path.is_file():
        return []
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not UTF-8 text", "one requirement per line") from None


def flavors(mlmodel: dict[str, Any]) -> list[str]:
    return sorted((mlmodel.get("flavors") or {}).keys())


def input_example(model_dir: Path, mlmodel: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The saved input example as records, for smoke tests and docs (None for tensors)."""
    from home_mlops.build.gateway_context import read_input_example
    from home_mlops.gateway.spec import records_from_example

    signature = parse_signature(mlmodel) or {}
    names = [c["name"] for c in signature.get("inputs") or [] if isinstance(c, dict) and "name" in c]
    return records_from_example(read_input_example(model_dir, mlmodel), names or None)
