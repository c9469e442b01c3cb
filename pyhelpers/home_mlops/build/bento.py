"""Import a resolved model into BentoML, render the bento folder, build the Bento.

The bentofile is rendered fresh for every build through a YAML library (the seed
edited a committed one in place with yq): same resolved run in, same file out.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from home_mlops import console, env, output, settings
from home_mlops.errors import BuildFailed
from home_mlops.resolve.resolver import ResolvedModel

SERVICE_FILE = "service.py"
RAWBODY_FILE = "rawbody.py"
SERVICE_CONFIG = "home_mlops_service.json"


@dataclass(frozen=True)
class BentoSource:
    folder: Path  # holds bentofile.yaml, service.py, its config, requirements.txt
    model_tag: str
    service_overridden: bool


def model_version(resolved: ResolvedModel) -> str:
    """Deterministic BentoML version for a run's model: same run, same tag."""
    return f"{resolved.run_id[:12]}-{resolved.content_digest[:8]}"


def model_tag(app: str, resolved: ResolvedModel) -> str:
    return f"{app}:{model_version(resolved)}"


def trace_labels(app: str, resolved: ResolvedModel) -> dict[str, str]:
    return {
        "app": app,
        "experiment_id": resolved.experiment_id,
        "run_id": resolved.run_id,
        "model_id": resolved.model_id or "",
        "model_uri": resolved.model_uri,
        "flavor": ",".join(f for f in resolved.flavors if f != "python_function"),
    }


@contextmanager
def bentoml_home():
    """Point BentoML at our state folder (its store is process-global, read at import)."""
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home()))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    yield Path(os.environ["BENTOML_HOME"])


def import_model(app: str, resolved: ResolvedModel):
    """The model in the BentoML store, imported once per (run, content)."""
    with bentoml_home():
        import bentoml
        from bentoml.exceptions import NotFound as BentoNotFound

        tag = model_tag(app, resolved)
        try:
            existing = bentoml.models.get(tag)
            console.ok(f"BentoML model {tag} already imported")
            return existing
        except BentoNotFound:
            pass
        console.step(f"importing {resolved.model_uri} into BentoML as {tag}")
        try:
            return bentoml.mlflow.import_model(
                tag,
                resolved.local_path,
                labels=trace_labels(app, resolved),
                metadata={"content_digest": resolved.content_digest, "artifact_uri": resolved.artifact_uri},
            )
        except Exception as exc:  # noqa: BLE001 - BentoML removes its temp model on failure
            raise BuildFailed(
                f"BentoML could not import {resolved.model_uri}: {str(exc)[:300]}",
                "an MLflow model with a python_function flavor",
                "check the model logs a pyfunc-capable flavor",
            ) from None


def service_override(app: str) -> Path | None:
    root = settings.project_root() or Path.cwd()
    path = root / "serving" / app / "bento-ml" / SERVICE_FILE
    return path if path.is_file() else None


def render_bentofile(app: str, resolved: ResolvedModel, tag: str, base_image: str) -> dict[str, Any]:
    labels = {k.replace("_", "-"): v for k, v in trace_labels(app, resolved).items()}
    docker: dict[str, Any] = {"base_image": base_image}
    if resolved.python_version:
        docker["python_version"] = ".".join(resolved.python_version.split(".")[:2])
    return {
        "service": "service:ModelService",
        "name": f"{app}-bento",
        "labels": labels,
        "include": [SERVICE_FILE, SERVICE_CONFIG, RAWBODY_FILE],
        "python": {"requirements_txt": "./requirements.txt", "lock_packages": False},
        "docker": docker,
        "models": [tag],
    }


def service_config(app: str, resolved: ResolvedModel, tag: str) -> dict[str, Any]:
    inputs = (resolved.signature or {}).get("inputs") or []
    return {
        "service_name": app.replace("-", "_"),
        "model_tag": tag,
        "inputs": [c for c in inputs if isinstance(c, dict)],
    }


def render_source(folder: Path, app: str, resolved: ResolvedModel, base_image: str, requirements: list[str]) -> BentoSource:
    """Write the bento build folder (replaced whole: no stale file survives)."""
    tag = model_tag(app, resolved)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    override = service_override(app)
    if override:
        shutil.copyfile(override, folder / SERVICE_FILE)
    else:
        template = resources.files("home_mlops.build") / "templates" / SERVICE_FILE
        (folder / SERVICE_FILE).write_text(template.read_text())
    # the default service imports the raw-body checks it shares with the gateway (stdlib only)
    (folder / RAWBODY_FILE).write_text((resources.files("home_mlops") / "gateway" / RAWBODY_FILE).read_text())
    (folder / SERVICE_CONFIG).write_text(json.dumps(service_config(app, resolved, tag), indent=2, sort_keys=True) + "\n")
    (folder / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
    bentofile = render_bentofile(app, resolved, tag, base_image)
    (folder / "bentofile.yaml").write_text(yaml.safe_dump(bentofile, sort_keys=False))
    return BentoSource(folder, tag, override is not None)


def build_bento(source: BentoSource, version: str):
    """`bentoml build` through the Python API; a failed build leaves nothing registered."""
    with bentoml_home():
        import bentoml
        from bentoml.exceptions import NotFound as BentoNotFound

        name = yaml.safe_load((source.folder / "bentofile.yaml").read_text())["name"]
        try:
            existing = bentoml.get(f"{name}:{version}")
            console.ok(f"Bento {existing.tag} already built")
            return existing
        except BentoNotFound:
            pass
        console.step(f"bentoml build ({name}:{version})")
        # the service module (build/templates/service.py) reads it when bentoml imports it to build
        os.environ[env.MODEL_TAG.name] = source.model_tag
        try:
            with output.tool_logs("bentoml", "bentoml"):
                return bentoml.bentos.build_bentofile(
                    str(source.folder / "bentofile.yaml"), build_ctx=str(source.folder), version=version
                )
        except Exception as exc:  # noqa: BLE001
            try:
                bentoml.delete(f"{name}:{version}")
            except Exception:  # noqa: BLE001 - nothing registered: fine
                pass
            raise BuildFailed(
                f"bentoml build failed: {output.clean(str(exc))[:400]}",
                "a service that imports and a model the service can load",
                "run `bentoml build` in the build folder for details: " + str(source.folder),
                log_tail=output.clean_lines(str(exc), last=15),
            ) from None
