"""CLI commands of the build-and-deploy chain: bento-build, fastapi-build, deploy, status, pipeline."""
from __future__ import annotations

from typing import Any, Optional

import typer

from . import console
from .cli import AppOpt, ExpOpt, JsonOpt, ModelNameOpt, NasOpt, RegOpt, RunOpt, TrackOpt, job_params, run_command
from .params import validate_model_name
from .platform import BASE_IMAGE

BaseImageOpt = typer.Option(BASE_IMAGE, "--base-image", envvar="HOME_MLOPS_BASE_IMAGE", help="Local base image with python3 + venv.")
PushOpt = typer.Option(True, "--push/--no-push", help="Push the image to AR_NAME.")
ForceOpt = typer.Option(False, "--force", help="Overwrite a tag that holds different content.")


def _resolve(params, tracking_uri, model_name):
    from .resolve import resolve

    if model_name:
        validate_model_name(model_name)
    return resolve(params.experiment_id, params.run_id, nas=params.nas, tracking_uri=tracking_uri, model_name=model_name)


def register(app: typer.Typer) -> None:
    @app.command("bento-build")
    def bento_build(
        app_name: Optional[str] = AppOpt, experiment_id: Optional[str] = ExpOpt, run_id: Optional[str] = RunOpt,
        nas: Optional[str] = NasOpt, registry: Optional[str] = RegOpt, tracking_uri: Optional[str] = TrackOpt,
        base_image: str = BaseImageOpt, do_push: bool = PushOpt, force: bool = ForceOpt,
        model_name: Optional[str] = ModelNameOpt, json_path: Optional[str] = JsonOpt,
    ) -> None:
        """Build the BentoML model-server image for a run and push it."""

        def body() -> dict[str, Any]:
            from .stages import bento_build as stage

            params = job_params(app_name, experiment_id, run_id, nas, registry)
            resolved = _resolve(params, tracking_uri, model_name)
            return stage(params, resolved, base_image=base_image, do_push=do_push, force=force)

        run_command("bento-build", json_path, body)

    @app.command("fastapi-build")
    def fastapi_build(
        app_name: Optional[str] = AppOpt, experiment_id: Optional[str] = ExpOpt, run_id: Optional[str] = RunOpt,
        nas: Optional[str] = NasOpt, registry: Optional[str] = RegOpt, tracking_uri: Optional[str] = TrackOpt,
        base_image: str = BaseImageOpt, do_push: bool = PushOpt, force: bool = ForceOpt,
        model_name: Optional[str] = ModelNameOpt, json_path: Optional[str] = JsonOpt,
    ) -> None:
        """Build the FastAPI gateway image (generated from the model's signature) and push it."""

        def body() -> dict[str, Any]:
            from .stages import fastapi_build as stage

            params = job_params(app_name, experiment_id, run_id, nas, registry)
            resolved = _resolve(params, tracking_uri, model_name)
            return stage(params, resolved, base_image=base_image, do_push=do_push, force=force)

        run_command("fastapi-build", json_path, body)
