"""The standalone FastAPI model server image (serving mode ``fastapi``): the front door with the
model in process (``gateway/inprocess.py``), no BentoML, no MLflow server parts.

The build context holds the ``gateway`` package (the same front door the ``bento+gateway``
mode runs, plus the in-process backend), ``gateway-spec.json``, the model folder (with its
MLmodel also as JSON: the image has no YAML parser), a hash-pinned lock of the model's own
requirements plus the server's runtime packages, and their wheels (the build needs no
network). The model's requirements lose ``mlflow`` when a native loader serves the flavor;
only the pyfunc fallback keeps ``mlflow-skinny``.
"""
from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

from home_mlops import settings
from home_mlops.build.bento import model_version
from home_mlops.build.bento_image import lock_text
from home_mlops.build.docker_build import ImageInfo, build_image
from home_mlops.build.dockerfiles import render
from home_mlops.build.gateway_context import GATEWAY_PORT, GATEWAY_RUNTIME_ROOTS, RUNTIME_UID, load_model_spec
from home_mlops.build.gateway_image import override_dir
from home_mlops.build.wheels import fetch_wheels, image_requirements, lock
from home_mlops.gateway.inprocess import MLMODEL_JSON, NATIVE_FLAVORS
from home_mlops.gateway.spec import SPEC_FILENAME
from home_mlops.resolve.mlmodel import model_file, read_mlmodel
from home_mlops.resolve.resolver import ResolvedModel

_PACKAGE_DIR = Path(__file__).resolve().parents[1] / "gateway"
#: what each native loader imports beyond the flavor's framework (its files' serialization)
_SERIALIZERS = {"cloudpickle": "cloudpickle", "skops": "skops"}
_MLFLOW = {"mlflow", "mlflow-skinny"}


def native_flavor(mlmodel: dict) -> str | None:
    """The flavor the server loads natively, or None (pyfunc fallback)."""
    flavors = mlmodel.get("flavors") or {}
    return next((f for f in NATIVE_FLAVORS if f in flavors), None)


def server_requirements(requirements: list[str], mlmodel: dict) -> list[str]:
    """The model's pinned requirements as the server needs them: mlflow out for a native flavor
    (mlflow-skinny in for the fallback), the serializer the model file was written with in,
    and the front door's runtime packages pinned to the versions this host tests with."""
    flavor = native_flavor(mlmodel)
    kept = [r for r in requirements if flavor is None or r.partition("==")[0].lower() not in _MLFLOW]
    names = {r.partition("==")[0].lower() for r in kept}
    conf = (mlmodel.get("flavors") or {}).get(flavor or "", {}) or {}
    serializer = _SERIALIZERS.get(str(conf.get("serialization_format", "")))
    if flavor == "pytorch":
        serializer = "cloudpickle"
    extra = []
    if serializer and serializer not in names:
        extra.append(f"{serializer}=={metadata.version(serializer)}")
    extra += [f"{root}=={metadata.version(root)}" for root in GATEWAY_RUNTIME_ROOTS]
    if flavor is None and not names & _MLFLOW:
        extra.append(f"mlflow-skinny=={metadata.version('mlflow')}")  # skinny follows mlflow's versions
    return image_requirements(kept, extra)


def copy_model(model_dir: Path, dest: Path, mlmodel: dict) -> None:
    """The model folder as the image gets it (regular files only; the resolver refused links out),
    plus MLmodel.json."""
    def ignore(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if Path(folder, n).is_symlink()]

    shutil.copytree(model_dir, dest, ignore=ignore)
    (dest / MLMODEL_JSON).write_text(json.dumps(mlmodel, sort_keys=True, default=str) + "\n", encoding="utf-8")


def render_server_context(context: Path, app: str, resolved: ResolvedModel, base_image: str) -> Path:
    """Write the folder `docker build` reads (replaced whole on every build)."""
    model_dir = Path(resolved.local_path)
    spec = load_model_spec(model_dir, app=app, experiment_id=resolved.experiment_id, run_id=resolved.run_id,
                           model_id=resolved.model_id, model_uri=resolved.model_uri)
    mlmodel = read_mlmodel(model_dir)
    for flavor, conf in (mlmodel.get("flavors") or {}).items():  # what the loader opens stays in the folder
        for key in ("pickled_model", "data", "model_data"):
            if isinstance(conf, dict) and isinstance(conf.get(key), str):
                model_file(model_dir, conf[key], f"flavors.{flavor}.{key}")
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    package = context / "gateway"
    package.mkdir()
    for source in sorted(_PACKAGE_DIR.glob("*.py")):  # the whole front door, the in-process backend with it
        shutil.copy2(source, package / source.name)
    extra = False
    overrides = override_dir(app)
    if (overrides / "extra.py").is_file():
        shutil.copy2(overrides / "extra.py", context / "extra.py")
        extra = True
    spec.save(context / SPEC_FILENAME)
    copy_model(model_dir, context / "model", mlmodel)
    requirements = server_requirements(resolved.requirements, mlmodel)
    pinned = lock(requirements)
    (context / "requirements.lock").write_text(lock_text(resolved.requirements, pinned))
    fetch_wheels(pinned, context / "wheels")
    (context / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n", encoding="utf-8")
    (context / "Dockerfile").write_text(render("server.Dockerfile.j2", dict(
        app=app, base_image=base_image, port=GATEWAY_PORT, uid=RUNTIME_UID, extra=extra)))
    return context


def build_server_image(app: str, resolved: ResolvedModel, ref: str, base_image: str,
                       labels: dict[str, str]) -> ImageInfo:
    context = settings.builds_dir() / app / model_version(resolved) / "server"
    render_server_context(context, app, resolved, base_image)
    return build_image(context, ref, labels, what="server")
