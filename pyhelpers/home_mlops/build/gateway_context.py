"""Render the gateway image's docker build context (runs on the build host).

The context holds the ``gateway/`` package source, ``gateway-spec.json``, the
per-app override (``serving/<app>/fast-api/extra.py`` or a replacement
``app.py``), ``requirements.txt`` pinning the gateway's runtime packages to
the host venv's versions, a ``wheels/`` folder with one wheel per pin (so the
image builds without network), and a Dockerfile whose layers go from what
changes least (base, venv, pip install) to what changes every run (code, spec,
labels).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping


from home_mlops.build import wheels
from home_mlops.build.wheels import ensure_wheels, link_or_copy, requirements_text
from home_mlops.errors import BadInput
from home_mlops.gateway.spec import SPEC_FILENAME, GatewaySpec, SpecError, records_from_example, spec_from_mlmodel

__all__ = [
    "GATEWAY_RUNTIME_ROOTS",
    "GATEWAY_PORT",
    "load_model_spec",
    "read_input_example",
    "spec_from_mlmodel",
    "runtime_requirements",
    "ensure_wheels",
    "render_dockerfile",
    "render_gateway_context",
    "records_from_example",
]

#: what the gateway imports at run time; the pins are their dependency closure
# uvloop + httptools: uvicorn picks them up by itself and they halve the added latency.
# orjson: the front door's JSON in and out; fastapi-offline: the swagger-ui / redoc assets /docs serves.
GATEWAY_RUNTIME_ROOTS = ("fastapi", "uvicorn", "httpx", "prometheus-client", "uvloop", "httptools", "orjson",
                         "fastapi-offline")
GATEWAY_PORT = 8000
#: the package files copied into the image (context.py stays on the host)
# Every module of the front door (a new one ships without a second list to update); the in-process
# backend only goes into the standalone server image (build/server_image.py).
PACKAGE_FILES = tuple(sorted(p.name for p in (Path(__file__).resolve().parents[1] / "gateway").glob("*.py")
                             if p.name != "inprocess.py"))
RUNTIME_UID = 10001

# The gateway package this module builds into the image (a sibling package).
_PACKAGE_DIR = Path(__file__).resolve().parents[1] / "gateway"
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_BASE_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


# --------------------------------------------------------------------------- the spec


def read_input_example(model_dir: Path, mlmodel: Mapping[str, Any]) -> Any:
    """The parsed input example saved with the model, or None when there is none.

    Paths the MLmodel names must stay inside the model folder (exit 2 naming the field)."""
    from home_mlops.resolve.mlmodel import model_file

    info = mlmodel.get("saved_input_example_info") or {}
    if not isinstance(info, Mapping):
        info = {}
    if info.get("serving_input_path") is not None:  # not read here, but never a path out of the model
        model_file(Path(model_dir), info["serving_input_path"], "saved_input_example_info.serving_input_path")
    candidates = [
        (info.get("artifact_path"), "saved_input_example_info.artifact_path"),
        ("input_example.json", "input_example.json"),
        ("serving_input_example.json", "serving_input_example.json"),
    ]
    for name, field in candidates:
        if name is None:
            continue
        path = model_file(Path(model_dir), name, field)
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise BadInput(
                    f"the model's input example {path.name} is not valid JSON: {str(exc)[:200]}",
                    "the JSON file MLflow wrote with the model",
                    "log the model again with an input_example, or remove the broken file",
                ) from None
    return None


def load_model_spec(
    model_dir: Path,
    *,
    app: str,
    experiment_id: str = "",
    run_id: str | None = None,
    model_id: str | None = None,
    model_uri: str | None = None,
    title: str | None = None,
) -> GatewaySpec:
    """Read ``<model_dir>/MLmodel`` and its input example and build the GatewaySpec."""
    from home_mlops.resolve.mlmodel import read_mlmodel

    model_dir = Path(model_dir)
    mlmodel = read_mlmodel(model_dir)
    example = read_input_example(model_dir, mlmodel)
    try:
        return spec_from_mlmodel(
            mlmodel, example, app=app, experiment_id=experiment_id, run_id=run_id,
            model_id=model_id, model_uri=model_uri, title=title,
        )
    except SpecError as exc:
        raise BadInput(str(exc), "an MLmodel with a column- or tensor-based signature",
                       "log the model with a signature (mlflow.models.infer_signature)") from exc


# --------------------------------------------------------------------------- requirements


def runtime_requirements(roots: Iterable[str] = GATEWAY_RUNTIME_ROOTS) -> dict[str, str]:
    """``{canonical name: installed version}`` for the dependency closure of the gateway's packages."""
    return wheels.runtime_requirements(roots)


# --------------------------------------------------------------------------- Dockerfile

def _label_line(key: str, value: str) -> str:
    if not _LABEL_KEY.match(key):
        raise BadInput(f"image label key {key!r} is not valid", "letters, digits, '.', '_', '/', '-'")
    value = str(value)
    if any(ord(ch) < 32 for ch in value):
        raise BadInput(f"image label {key} has a control character (newline?) in its value", "one line of text")
    quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{key}"="{quoted}"'


def render_dockerfile(
    base_image: str,
    labels: Mapping[str, str],
    *,
    app: str = "",
    extra: bool = False,
    port: int = GATEWAY_PORT,
) -> str:
    if not _BASE_IMAGE.match(base_image or ""):
        raise BadInput(f"base image {base_image!r} is not an image reference",
                       "e.g. home-mlops/debian-bookworm-python:latest")
    from home_mlops.build.dockerfiles import render  # every Dockerfile: build/templates/, one environment

    return render("gateway.Dockerfile.j2", dict(
        app=app, base_image=base_image, port=int(port), uid=RUNTIME_UID, extra=extra,
        labels=[_label_line(k, v) for k, v in sorted(labels.items())],
    ))


def render_gateway_context(
    build_dir: Path,
    spec: GatewaySpec,
    base_image: str,
    wheels_dir: Path | None,
    labels: dict[str, str],
    override_dir: Path | None,
) -> Path:
    """Write the gateway image's build context into ``build_dir`` and return it.

    ``wheels_dir`` is the shared wheel cache (a second build downloads
    nothing); None downloads into the context itself. ``override_dir`` is
    ``serving/<app>/fast-api`` (may be missing): its ``extra.py`` is copied
    next to the package (and enabled with HOME_MLOPS_GATEWAY_EXTRA), its
    ``app.py`` replaces the gateway's (it must define ``create_app(spec)``).
    ``build_dir`` is emptied first.
    """
    build_dir = Path(build_dir)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)

    # the package source
    pkg = build_dir / "gateway"
    pkg.mkdir()
    for name in PACKAGE_FILES:
        shutil.copy2(_PACKAGE_DIR / name, pkg / name)

    # per-app overrides
    extra = False
    if override_dir is not None and Path(override_dir).is_dir():
        override_dir = Path(override_dir)
        if (override_dir / "app.py").is_file():
            shutil.copy2(override_dir / "app.py", pkg / "app.py")
        if (override_dir / "extra.py").is_file():
            shutil.copy2(override_dir / "extra.py", build_dir / "extra.py")
            extra = True

    spec.save(build_dir / SPEC_FILENAME)

    # pinned requirements and their wheels
    pins = runtime_requirements()
    (build_dir / "requirements.txt").write_text(requirements_text(pins), encoding="utf-8")
    context_wheels = build_dir / "wheels"
    context_wheels.mkdir()
    if wheels_dir is None:
        ensure_wheels(pins, context_wheels)
    else:
        for src in ensure_wheels(pins, Path(wheels_dir)).values():
            link_or_copy(src, context_wheels / src.name)

    (build_dir / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n", encoding="utf-8")
    (build_dir / "Dockerfile").write_text(
        render_dockerfile(base_image, labels, app=spec.app, extra=extra), encoding="utf-8")
    return build_dir
