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
    def build_command(name: str, stage_name: str, doc: str) -> None:
        @app.command(name, help=doc)
        def command(
            app_name: Optional[str] = AppOpt, experiment_id: Optional[str] = ExpOpt, run_id: Optional[str] = RunOpt,
            nas: Optional[str] = NasOpt, registry: Optional[str] = RegOpt, tracking_uri: Optional[str] = TrackOpt,
            base_image: str = BaseImageOpt, do_push: bool = PushOpt, force: bool = ForceOpt,
            model_name: Optional[str] = ModelNameOpt, json_path: Optional[str] = JsonOpt,
        ) -> None:
            def body() -> dict[str, Any]:
                from . import stages

                params = job_params(app_name, experiment_id, run_id, nas, registry)
                resolved = _resolve(params, tracking_uri, model_name)
                stage = getattr(stages, stage_name)
                return stage(params, resolved, base_image=base_image, do_push=do_push, force=force)

            run_command(name, json_path, body)

    build_command("bento-build", "bento_build", "Build the BentoML model-server image for a run and push it.")
    build_command(
        "fastapi-build", "fastapi_build",
        "Build the FastAPI gateway image (generated from the model's signature) and push it.",
    )

    PortOpt = typer.Option(8000, "--port", envvar="HOME_MLOPS_PORT", help="Public port of the gateway.")

    @app.command()
    def deploy(
        app_name: Optional[str] = AppOpt, experiment_id: Optional[str] = ExpOpt, run_id: Optional[str] = RunOpt,
        nas: Optional[str] = NasOpt, registry: Optional[str] = RegOpt, tracking_uri: Optional[str] = TrackOpt,
        port: int = PortOpt, rollback: bool = typer.Option(False, "--rollback", help="Go back to the previous run of --app."),
        model_name: Optional[str] = ModelNameOpt, json_path: Optional[str] = JsonOpt,
    ) -> None:
        """Run the app's bento + gateway pair; a new run replaces the old one only once it answers."""

        def body() -> dict[str, Any]:
            from .params import validate_app

            if rollback:
                from .deploy import rollback as do_rollback

                result = do_rollback(validate_app(app_name or ""))
                return result.to_dict()
            from .stages import deploy_stage

            params = job_params(app_name, experiment_id, run_id, nas, registry)
            resolved = _resolve(params, tracking_uri, model_name)
            return deploy_stage(params, resolved, port=port)

        run_command("deploy", json_path, body)

    @app.command()
    def status(app_name: Optional[str] = typer.Option(None, "--app"), json_path: Optional[str] = JsonOpt) -> None:
        """What is deployed on this Docker host: app, run, images, health."""

        def body() -> dict[str, Any]:
            from .deploy import status as deploy_status
            from .params import validate_app

            rows = deploy_status(validate_app(app_name) if app_name else None)
            for row in rows:
                console.info("  ".join(f"{k}={v}" for k, v in row.items() if k in ("app", "run_id", "url", "health", "ready")))
            if not rows:
                console.info("nothing deployed")
            return {"deployments": rows}

        run_command("status", json_path, body)

    @app.command()
    def pipeline(
        app_name: Optional[str] = AppOpt, experiment_id: Optional[str] = ExpOpt, run_id: Optional[str] = RunOpt,
        nas: Optional[str] = NasOpt, registry: Optional[str] = RegOpt, tracking_uri: Optional[str] = TrackOpt,
        base_image: str = BaseImageOpt, do_push: bool = PushOpt, force: bool = ForceOpt, port: int = PortOpt,
        model_name: Optional[str] = ModelNameOpt, json_path: Optional[str] = JsonOpt,
    ) -> None:
        """Resolve, bento-build, fastapi-build and deploy: the whole job in one command."""

        def body() -> dict[str, Any]:
            import time

            from .stages import bento_build as bento_stage, deploy_stage, fastapi_build as gateway_stage

            params = job_params(app_name, experiment_id, run_id, nas, registry)
            timings: dict[str, float] = {}

            def timed(name: str, number: int, fn):
                console.console.rule(f"[bold]{number}/4 {name}")
                started = time.monotonic()
                out = fn()
                timings[name] = round(time.monotonic() - started, 2)
                return out

            resolved = timed("resolve", 1, lambda: _resolve(params, tracking_uri, model_name))
            bento = timed("bento-build", 2, lambda: bento_stage(params, resolved, base_image=base_image, do_push=do_push, force=force))
            gateway = timed("fastapi-build", 3, lambda: gateway_stage(params, resolved, base_image=base_image, do_push=do_push, force=force))
            deployed = timed("deploy", 4, lambda: deploy_stage(params, resolved, port=port))
            console.ok(f"{params.app} run {params.run_id} serves on {deployed['url']}/predict")
            return {
                "app": params.app, "url": deployed["url"], "timings": timings,
                "resolve": resolved.model_dump(exclude={"input_example"}), "bento": bento, "gateway": gateway, "deploy": deployed,
            }

        run_command("pipeline", json_path, body)
