"""`home-mlops pipeline`: resolve, bento-build, fastapi-build and deploy in one command."""
from __future__ import annotations

from typing import Any, Optional

import typer

from home_mlops import console, output
from home_mlops.cli.common import AppOpt, ExpOpt, JsonOpt, ModelNameOpt, NasOpt, RegOpt, RunOpt, TrackOpt, run_command
from home_mlops.cli.k8s import NamespaceOpt
from home_mlops.cli.run_options import (BaseImageOpt, BindOpt, CpusOpt, ForceOpt, FromOpt, MemoryOpt, PortOpt,
                                        PromoteAliasOpt, PushOpt, ReadyTimeoutOpt, ServingOpt, TargetOpt,
                                        alias_to_promote, deploy_settings, given_params, registered_params,
                                        resolve_run, with_registered, write_back_push)
from home_mlops.records import as_result
from home_mlops.build.trust import require_trusted_registry


def _deploy_stage(params, resolved, settings) -> dict[str, Any]:
    """Deploy a resolved run's images on the app's target: this Docker host, or a cluster (k8s/target.py)."""
    if settings.target == "k8s":
        from home_mlops.k8s.target import deploy_run

        return as_result(deploy_run(params, lambda: resolved, settings)[1])
    from home_mlops.build.stages import deploy_stage

    return as_result(deploy_stage(params, resolved, settings=settings))


def register(app: typer.Typer) -> None:
    @app.command()
    def pipeline(
        app_name: Optional[str] = AppOpt, experiment_id: Optional[str] = ExpOpt, run_id: Optional[str] = RunOpt,
        nas: Optional[str] = NasOpt, registry: Optional[str] = RegOpt, tracking_uri: Optional[str] = TrackOpt,
        base_image: str = BaseImageOpt, do_push: bool = PushOpt, force: bool = ForceOpt,
        port: Optional[str] = PortOpt, bind: Optional[str] = BindOpt, cpus: Optional[str] = CpusOpt,
        memory: Optional[str] = MemoryOpt, ready_timeout: Optional[str] = ReadyTimeoutOpt,
        target: Optional[str] = TargetOpt, serving: Optional[str] = ServingOpt, namespace: Optional[str] = NamespaceOpt,
        model_name: Optional[str] = ModelNameOpt, promote_alias: Optional[str] = PromoteAliasOpt,
        from_path: Optional[str] = FromOpt, json_path: Optional[str] = JsonOpt,
    ) -> None:
        """Resolve, bento-build, fastapi-build and deploy: the whole job in one command."""

        def body() -> dict[str, Any]:
            import time

            from home_mlops.build.stages import bento_build as bento_stage, fastapi_build as gateway_stage

            from home_mlops.resolve import provenance

            params, earlier = given_params(from_path, app_name, experiment_id, run_id, nas, registry)
            settings = deploy_settings(params.app, port, bind, cpus, memory, ready_timeout, target, serving,
                                       namespace=namespace)
            require_trusted_registry(params.registry)  # the deploy stage pulls from it: refused before building
            params, registered = registered_params(params, tracking_uri, earlier)
            alias = alias_to_promote(promote_alias, registered)
            timings: dict[str, float] = {}

            def timed(name: str, number: int, fn):
                console.rule(f"{number}/4 {name}")
                started = time.monotonic()
                with output.stage(name):  # its lines, and a failure's summary, name the stage
                    out = fn()
                timings[name] = round(time.monotonic() - started, 2)
                return out

            resolved = timed("resolve", 1, lambda: resolve_run(params, tracking_uri, model_name, registered, earlier))
            build = dict(base_image=base_image, do_push=do_push, force=force, serving=settings.serving)
            bento = timed("bento-build", 2, lambda: as_result(bento_stage(params, resolved, **build)))
            gateway = timed("fastapi-build", 3, lambda: as_result(gateway_stage(params, resolved, **build)))
            for built in (bento, gateway):  # only what the mode built
                if built.get("status") != "skipped":
                    write_back_push(resolved, registered, tracking_uri, built["role"], built)
            deployed = timed("deploy", 4, lambda: _deploy_stage(params, resolved, settings))
            provenance.after_deploy(params.app, provenance.Target.of(resolved, registered, tracking_uri), deployed, alias)
            console.ok(f"{params.app} run {params.run_id} serves on {deployed['url']}/predict")
            bento, gateway, deployed = (with_registered(r, registered) for r in (bento, gateway, deployed))
            return {
                "app": params.app, "url": deployed["url"], "local_url": deployed["local_url"], "timings": timings,
                "resolve": resolved.model_dump(exclude={"input_example"}), "bento": bento, "gateway": gateway, "deploy": deployed,
            }

        run_command("pipeline", json_path, body)
