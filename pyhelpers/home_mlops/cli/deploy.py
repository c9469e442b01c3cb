"""`home-mlops deploy`, `undeploy` and `status`: a run's images served, removed, listed (Docker or k8s)."""
from __future__ import annotations

from typing import Any, Optional

import typer

from home_mlops import console, output
from home_mlops.cli.common import AppOpt, ExpOpt, JsonOpt, ModelNameOpt, NasOpt, RegOpt, RunOpt, TrackOpt, run_command
from home_mlops.cli.k8s import NamespaceOpt
from home_mlops.cli.run_options import (BindOpt, CpusOpt, FromOpt, MemoryOpt, PortOpt, PromoteAliasOpt,
                                        ReadyTimeoutOpt, ServingOpt, TargetOpt, alias_to_promote, deploy_settings,
                                        given_params, registered_params, resolve_run, with_registered)
from home_mlops.errors import BadInput
from home_mlops.records import as_result
from home_mlops.build.trust import require_trusted_registry
from home_mlops.deploy.app_settings import SERVING_ROLES


def _deploy_images(params, images: dict[str, str | None], settings) -> dict[str, Any]:
    """Deploy given images (already built, e.g. by an earlier job) under the run's identity: exactly
    the roles of the app's serving mode."""
    from home_mlops.deploy.switch import Release, deploy

    roles = SERVING_ROLES[settings.serving]
    wanted = " and ".join(f"--{r}-image" for r in roles)
    missing = [r for r in roles if not images.get(r)]
    unused = [r for r, ref in images.items() if ref and r not in roles]
    if missing or unused:
        problem = (f"missing: {', '.join('--' + r + '-image' for r in missing)}" if missing
                   else f"not used by this mode: {', '.join('--' + r + '-image' for r in unused)}")
        raise BadInput(f"serving mode {settings.serving} deploys {wanted}; {problem}",
                       f"{wanted}, or no image option at all (the run's own images)",
                       "give the images of the mode (--serving / HOME_MLOPS_SERVING selects it)")
    release = Release(params.app, params.experiment_id, params.run_id, "", images.get("bento") or "",
                      images.get("gateway") or "", None, images.get("server") or "")
    return deploy(release, settings).to_dict()


def _deploy_k8s(params, settings, tracking_uri, model_name, registered, alias, images_given: bool,
                earlier=None) -> dict[str, Any]:
    """deploy --target k8s: the cluster is asked first, then the run resolved and its pushed images deployed."""
    from home_mlops.k8s.target import deploy_run
    from home_mlops.resolve import provenance

    if images_given:
        raise BadInput("--bento-image / --gateway-image are Docker-target options",
                       "the run's own pushed images with --target k8s (their digests come from the registry)",
                       "drop the image options, or deploy with --target docker")
    require_trusted_registry(params.registry)
    resolved, deployed = deploy_run(params, lambda: resolve_run(params, tracking_uri, model_name, registered, earlier),
                                    settings)
    result = as_result(deployed)
    provenance.after_deploy(params.app, provenance.Target.of(resolved, registered, tracking_uri), result, alias)
    return with_registered(result, registered)


STATUS_COLUMNS = ("app", "url", "port", "run", "model id", "health", "ready", "deployed at")


def status_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The status as plain aligned lines (never cut to a terminal's width: Jenkins logs have none),
    each app's images with their digests on the lines under it, then its serving mode."""
    cells = [[str(c) for c in (row["app"], row["url"], row["port"], row["run_id"], row["model_id"] or "-",
                                row["health"], "yes" if row["ready"] else "no", row["deployed_at"])] for row in rows]
    header, *row_lines = output.aligned(STATUS_COLUMNS, cells)
    lines = [header]
    for row, line in zip(rows, row_lines):
        lines.append(line)
        serving = row.get("serving") or "bento+gateway"
        for role in SERVING_ROLES.get(serving, ("bento", "gateway")):
            lines.append(f"    {role} image: {row.get(f'{role}_image') or '-'} @ {row.get(f'{role}_digest') or '-'}")
        lines.append(f"    serving: {serving} (front door: {row.get('front_door') or 'gateway'})")
    return lines


def register(app: typer.Typer) -> None:
    @app.command()
    def deploy(
        app_name: Optional[str] = AppOpt, experiment_id: Optional[str] = ExpOpt, run_id: Optional[str] = RunOpt,
        nas: Optional[str] = NasOpt, registry: Optional[str] = RegOpt, tracking_uri: Optional[str] = TrackOpt,
        port: Optional[str] = PortOpt, bind: Optional[str] = BindOpt, cpus: Optional[str] = CpusOpt,
        memory: Optional[str] = MemoryOpt, ready_timeout: Optional[str] = ReadyTimeoutOpt,
        target: Optional[str] = TargetOpt, serving: Optional[str] = ServingOpt, namespace: Optional[str] = NamespaceOpt,
        rollback: bool = typer.Option(False, "--rollback", help="Go back to the previous run of --app."),
        bento_image: Optional[str] = typer.Option(
            None, "--bento-image", help="Deploy this model-server image instead of the run's (with --gateway-image)."),
        gateway_image: Optional[str] = typer.Option(
            None, "--gateway-image", help="Deploy this gateway image instead of the run's (with --bento-image)."),
        server_image: Optional[str] = typer.Option(
            None, "--server-image", help="Deploy this standalone server image instead of the run's (serving fastapi)."),
        model_name: Optional[str] = ModelNameOpt, promote_alias: Optional[str] = PromoteAliasOpt,
        from_path: Optional[str] = FromOpt, json_path: Optional[str] = JsonOpt,
    ) -> None:
        """Run the app's bento + gateway pair; a new run replaces the old one only once it answers."""

        def body() -> dict[str, Any]:
            from home_mlops.resolve import provenance
            from home_mlops.params import validate_app

            if rollback:
                from home_mlops.deploy.switch import rollback as do_rollback

                from home_mlops.k8s.target import k8s_settings, rollback_app

                app = validate_app(app_name or "")
                cluster = k8s_settings(app, target, namespace)
                result = as_result(rollback_app(app, cluster) if cluster is not None else do_rollback(app))
                provenance.after_rollback(app, result)
                return result
            params, earlier = given_params(from_path, app_name, experiment_id, run_id, nas, registry)
            settings = deploy_settings(params.app, port, bind, cpus, memory, ready_timeout, target, serving,
                                       namespace=namespace)
            params, registered = registered_params(params, tracking_uri, earlier)
            alias = alias_to_promote(promote_alias, registered)
            if settings.target == "k8s":
                return _deploy_k8s(params, settings, tracking_uri, model_name, registered, alias,
                                   bool(bento_image or gateway_image or server_image), earlier)
            if bento_image or gateway_image or server_image:  # given images: each is checked if it has to be pulled
                images = {"bento": bento_image, "gateway": gateway_image, "server": server_image}
                result = _deploy_images(params, images, settings)
                # Written back only where the run is known to live: the registry that named it.
                where = (provenance.Target(registered.tracking_uri, params.run_id, registered.model_id or "",
                                           registered.name, registered.version) if registered else None)
                if where is not None:
                    provenance.after_deploy(params.app, where, result, alias)
                return with_registered(result, registered)
            require_trusted_registry(params.registry)
            from home_mlops.build.stages import deploy_stage

            resolved = resolve_run(params, tracking_uri, model_name, registered, earlier)
            result = as_result(deploy_stage(params, resolved, settings=settings))
            provenance.after_deploy(params.app, provenance.Target.of(resolved, registered, tracking_uri), result, alias)
            return with_registered(result, registered)

        run_command("deploy", json_path, body)

    @app.command()
    def undeploy(app_name: Optional[str] = AppOpt, target: Optional[str] = TargetOpt,
                 namespace: Optional[str] = NamespaceOpt, json_path: Optional[str] = JsonOpt) -> None:
        """Stop and remove the app's containers (gateway first, draining in-flight requests)."""

        def body() -> dict[str, Any]:
            from home_mlops.resolve import provenance
            from home_mlops.deploy.switch import undeploy as do_undeploy
            from home_mlops.params import validate_app

            from home_mlops.k8s.target import k8s_settings, undeploy_app

            app = validate_app(app_name or "")
            cluster = k8s_settings(app, target, namespace)
            if cluster is not None:
                result = undeploy_app(app, cluster)
                if result["removed"]:
                    provenance.after_undeploy(app)
                return result
            removed = do_undeploy(app)
            if removed:
                provenance.after_undeploy(app)
            message = f"removed {len(removed)} containers of {app}" if removed else f"nothing of {app} was deployed"
            console.ok(message)
            return {"app": app, "removed": removed, "message": message}

        run_command("undeploy", json_path, body)

    @app.command()
    def status(app_name: Optional[str] = typer.Option(None, "--app", help="Only this app."),
               target: Optional[str] = TargetOpt, namespace: Optional[str] = NamespaceOpt,
               json_path: Optional[str] = JsonOpt) -> None:
        """What is deployed on this Docker host: app, URL, port, run, model, images, health, ready, deployed-at."""

        def body() -> dict[str, Any]:
            from home_mlops.deploy.status import status as deploy_status
            from home_mlops.params import validate_app

            from home_mlops.k8s.target import k8s_settings, status as k8s_status

            app = validate_app(app_name) if app_name else None
            cluster = k8s_settings(app, target, namespace)
            if cluster is not None:
                return k8s_status(app, cluster)
            rows = deploy_status(app)
            for line in status_lines(rows):
                console.info(line)
            if not rows:
                console.info("nothing deployed")
            return {"deployments": rows}

        run_command("status", json_path, body)
