"""The gateway image: a FastAPI app generated from the model's signature, built and labelled."""
from __future__ import annotations

from pathlib import Path

from home_mlops import settings
from home_mlops.build.bento import model_version
from home_mlops.build.gateway_context import load_model_spec, render_gateway_context
from home_mlops.build.docker_build import ImageInfo, build_image
from home_mlops.resolve.resolver import ResolvedModel
from home_mlops.build.wheels import wheel_cache


def override_dir(app: str) -> Path:
    root = settings.project_root() or Path.cwd()
    return root / "serving" / app / "fast-api"


def build_gateway_image(app: str, resolved: ResolvedModel, ref: str, base_image: str, labels: dict[str, str]) -> ImageInfo:
    spec = load_model_spec(
        Path(resolved.local_path), app=app, experiment_id=resolved.experiment_id, run_id=resolved.run_id,
        model_id=resolved.model_id, model_uri=resolved.model_uri,
    )
    context = settings.builds_dir() / app / model_version(resolved) / "gateway"
    # Labels go on through the build API, not the Dockerfile: a timestamp in the
    # context would defeat the "same inputs, no rebuild" check.
    render_gateway_context(context, spec, base_image, wheel_cache(), {}, override_dir(app))
    return build_image(context, ref, labels, what="gateway")
