"""`home-mlops bento-build` and `fastapi-build`: a run's images, built and pushed."""
from __future__ import annotations

from typing import Any, Optional

import typer

from home_mlops.cli.common import AppOpt, ExpOpt, JsonOpt, ModelNameOpt, NasOpt, RegOpt, RunOpt, TrackOpt, run_command
from home_mlops.cli.run_options import (BaseImageOpt, ForceOpt, FromOpt, PushOpt, ServingOpt, given_params,
                                        registered_params, resolve_run, with_registered, write_back_push)
from home_mlops.errors import BadInput
from home_mlops.records import as_result
from home_mlops.build.trust import require_trusted_registry
from home_mlops.deploy.app_settings import SERVING_ROLES


def serving_mode(app: str, serving: str | None) -> str:
    """The app's serving mode for a build command: --serving / HOME_MLOPS_SERVING, else its entry in
    jobs/projects.yaml, else bento+gateway (exit 2 for a mode that does not exist)."""
    from home_mlops.deploy.app_settings import SUPPORTED_SERVING, resolve_settings

    mode = resolve_settings(app, {"serving": serving}).serving
    if mode not in SUPPORTED_SERVING:
        raise BadInput(f"serving mode {mode!r} does not exist", f"serving {', '.join(SUPPORTED_SERVING)}",
                       "fix --serving (HOME_MLOPS_SERVING) or the app's serving in jobs/projects.yaml")
    return mode


def register(app: typer.Typer) -> None:
    def build_command(name: str, stage_name: str, doc: str) -> None:
        @app.command(name, help=doc)
        def command(
            app_name: Optional[str] = AppOpt, experiment_id: Optional[str] = ExpOpt, run_id: Optional[str] = RunOpt,
            nas: Optional[str] = NasOpt, registry: Optional[str] = RegOpt, tracking_uri: Optional[str] = TrackOpt,
            base_image: str = BaseImageOpt, do_push: bool = PushOpt, force: bool = ForceOpt,
            model_name: Optional[str] = ModelNameOpt, serving: Optional[str] = ServingOpt,
            from_path: Optional[str] = FromOpt, json_path: Optional[str] = JsonOpt,
        ) -> None:
            def body() -> dict[str, Any]:
                from home_mlops.build import stages

                params, earlier = given_params(from_path, app_name, experiment_id, run_id, nas, registry)
                mode = serving_mode(params.app, serving)
                wanted = "bento" if stage_name == "bento_build" else stages.fastapi_role(mode)
                if wanted not in SERVING_ROLES[mode]:  # nothing to build: no registry, no tracking server
                    return as_result(stages.skipped(params, name, mode, "BentoML image" if stage_name == "bento_build"
                                                    else "FastAPI image (the BentoML server is the front door)"))
                if do_push:  # refused before any build work (--no-push contacts no registry)
                    require_trusted_registry(params.registry)
                params, registered = registered_params(params, tracking_uri, earlier)
                resolved = resolve_run(params, tracking_uri, model_name, registered, earlier)
                stage = getattr(stages, stage_name)
                result = as_result(stage(params, resolved, base_image=base_image, do_push=do_push, force=force,
                                         serving=mode))
                write_back_push(resolved, registered, tracking_uri, result["role"], result)
                return with_registered(result, registered)

            run_command(name, json_path, body)

    build_command("bento-build", "bento_build", "Build the BentoML model-server image for a run and push it "
                  "(serving modes bento and bento+gateway; skipped in mode fastapi).")
    build_command(
        "fastapi-build", "fastapi_build",
        "Build the app's FastAPI image and push it: the gateway (generated from the model's signature) in "
        "serving mode bento+gateway, the standalone model server in mode fastapi (skipped in mode bento).",
    )
