"""CLI commands of the build-and-deploy chain: bento-build, fastapi-build, deploy, status, pipeline."""
from __future__ import annotations

from typing import Any, Optional

import typer

from home_mlops import console, env, output
from home_mlops.cli.common import AppOpt, ExpOpt, JsonOpt, ModelNameOpt, NasOpt, RegOpt, RunOpt, TrackOpt, job_params, run_command
from home_mlops.cli.k8s import NamespaceOpt
from home_mlops.errors import BadInput
from home_mlops.params import validate_model_name
from home_mlops.records import as_result
from home_mlops.platform.host import BASE_IMAGE
from home_mlops.build.trust import require_trusted_registry
from home_mlops.deploy.app_settings import SERVING_ROLES

BaseImageOpt = typer.Option(BASE_IMAGE, "--base-image", envvar=env.BASE_IMAGE.name, help="Local base image with python3 + venv.")
PushOpt = typer.Option(True, "--push/--no-push", help="Push the image to AR_NAME.")
ForceOpt = typer.Option(False, "--force", help="Overwrite a tag that holds different content.")
# Deploy settings: option > environment > the app's entry in jobs/projects.yaml > built-in default.
PortOpt = typer.Option(None, "--port", envvar=env.PORT.name, help="Public port of the gateway (default 8000).")
BindOpt = typer.Option(None, "--bind", envvar=env.BIND.name,
                       help="Address the public gateway listens on (default 0.0.0.0: every address).")
CpusOpt = typer.Option(None, "--cpus", envvar=env.CPUS.name, help="CPUs of the model server (default 1).")
MemoryOpt = typer.Option(None, "--memory", envvar=env.MEMORY.name, help="Memory of the model server (default 2g).")
ReadyTimeoutOpt = typer.Option(None, "--ready-timeout", envvar=env.READY_TIMEOUT.name,
                               help="Seconds the new pair may take to become ready (default 180).")
TargetOpt = typer.Option(None, "--target", envvar=env.TARGET.name, help="Where to deploy (default docker).")
ServingOpt = typer.Option(None, "--serving", envvar=env.SERVING.name, help="Serving mode (default bento+gateway).")
FromOpt = typer.Option(None, "--from", envvar=env.FROM.name,
                       help="Start from an earlier resolve/bento-build/fastapi-build result file of this run "
                            "(its --json) instead of resolving again.")


def _settings(app, port, bind, cpus, memory, ready_timeout, target, serving, **extra):
    from home_mlops.deploy.app_settings import resolve_settings

    settings = resolve_settings(app, dict(port=port, bind=bind, cpus=cpus, memory=memory,
                                          ready_timeout=ready_timeout, target=target, serving=serving, **extra))
    settings.check_supported()  # exit 2 before anything is resolved or built
    return settings


def serving_mode(app: str, serving: str | None) -> str:
    """The app's serving mode for a build command: --serving / HOME_MLOPS_SERVING, else its entry in
    jobs/projects.yaml, else bento+gateway (exit 2 for a mode that does not exist)."""
    from home_mlops.deploy.app_settings import SUPPORTED_SERVING, resolve_settings

    mode = resolve_settings(app, {"serving": serving}).serving
    if mode not in SUPPORTED_SERVING:
        raise BadInput(f"serving mode {mode!r} does not exist", f"serving {', '.join(SUPPORTED_SERVING)}",
                       "fix --serving (HOME_MLOPS_SERVING) or the app's serving in jobs/projects.yaml")
    return mode


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


def _deploy_stage(params, resolved, settings) -> dict[str, Any]:
    """Deploy a resolved run's images on the app's target: this Docker host, or a cluster (k8s/target.py)."""
    if settings.target == "k8s":
        from home_mlops.k8s.target import deploy_run

        return deploy_run(params, lambda: resolved, settings)[1]
    from home_mlops.build.stages import deploy_stage

    return as_result(deploy_stage(params, resolved, settings=settings))


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
    resolved, result = deploy_run(params, lambda: resolve_run(params, tracking_uri, model_name, registered, earlier),
                                  settings)
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


def given_params(from_path, app_name, experiment_id, run_id, nas, registry):
    """The job parameters, and the earlier result file they start from (--from; None without it):
    parameters not given are the file's, those given must match it (exit 2)."""
    if not from_path:
        return job_params(app_name, experiment_id, run_id, nas, registry), None
    from home_mlops.resolve import earlier as from_file

    found = from_file.load(from_path)
    return from_file.job_params(found, app_name, experiment_id, run_id, nas, registry), found


def registered_params(params, tracking_uri, earlier=None):
    """A models:/ RUN_ID swapped for its version's run (exit 2 on a bad URI or a wrong experiment);
    with --from, the version the earlier stage found (the registry is not asked again)."""
    from home_mlops.resolve.resolver import registered_version

    if earlier is not None:
        from home_mlops.resolve import earlier as from_file

        return from_file.registered_version(earlier, params, tracking_uri)
    return registered_version(params, tracking_uri)


def resolve_run(params, tracking_uri, model_name, registered=None, earlier=None):
    from home_mlops.resolve.resolver import resolve

    if model_name:
        validate_model_name(model_name)
    if earlier is not None:  # --from: the cached model, hashed again; resolved again only when it is gone
        from home_mlops.resolve import earlier as from_file

        from_file.check(earlier, params, model_name)
        found = from_file.reopen(earlier)
        if found is not None:
            return found
        console.warn(f"the model of {earlier.path} is no longer in this machine's cache: resolving the run again")
        model_name = model_name or earlier.resolved.model_id or earlier.resolved.model_name
        return from_file.same_model(earlier, resolve(params.experiment_id, params.run_id, nas=params.nas,
                                                     tracking_uri=tracking_uri, model_name=model_name))
    elif registered is not None and registered.model_id:
        model_name = registered.model_id  # the version's own logged model, not the run's newest
    if registered is not None:
        tracking_uri = registered.tracking_uri
    return resolve(params.experiment_id, params.run_id, nas=params.nas, tracking_uri=tracking_uri, model_name=model_name)


def with_registered(result: dict[str, Any], registered) -> dict[str, Any]:
    """The result names the models:/ URI and its version next to the run id when one was given."""
    if registered is not None:
        result["registered_model"] = registered.model_dump(exclude={"tracking_uri"})
    return result


def _write_back_push(resolved, registered, tracking_uri, role: str, result: dict[str, Any]) -> None:
    from home_mlops.resolve import provenance

    if result.get("pushed"):
        provenance.after_push(provenance.Target.of(resolved, registered, tracking_uri), role, result["image"], result["digest"])


PromoteAliasOpt = typer.Option(
    None, "--promote-alias", envvar=env.PROMOTE_ALIAS.name,
    help="After a successful deploy of a models:/ RUN_ID, point this registry alias at the deployed version "
         "(moved back on rollback).")


def _promote_alias(value: str | None, registered) -> str:
    from home_mlops.params import validate_alias

    if not value:
        return ""
    alias = validate_alias(value.strip(" "))
    if registered is None:
        raise BadInput("--promote-alias needs a registered model version",
                       "RUN_ID as models:/<name>@<alias> or models:/<name>/<version>",
                       "give the version by its registry name, or drop --promote-alias")
    return alias


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
                _write_back_push(resolved, registered, tracking_uri, result["role"], result)
                return with_registered(result, registered)

            run_command(name, json_path, body)

    build_command("bento-build", "bento_build", "Build the BentoML model-server image for a run and push it "
                  "(serving modes bento and bento+gateway; skipped in mode fastapi).")
    build_command(
        "fastapi-build", "fastapi_build",
        "Build the app's FastAPI image and push it: the gateway (generated from the model's signature) in "
        "serving mode bento+gateway, the standalone model server in mode fastapi (skipped in mode bento).",
    )

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
                result = rollback_app(app, cluster) if cluster is not None else do_rollback(app).to_dict()
                provenance.after_rollback(app, result)
                return result
            params, earlier = given_params(from_path, app_name, experiment_id, run_id, nas, registry)
            settings = _settings(params.app, port, bind, cpus, memory, ready_timeout, target, serving,
                                 namespace=namespace)
            params, registered = registered_params(params, tracking_uri, earlier)
            alias = _promote_alias(promote_alias, registered)
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
            settings = _settings(params.app, port, bind, cpus, memory, ready_timeout, target, serving,
                                 namespace=namespace)
            require_trusted_registry(params.registry)  # the deploy stage pulls from it: refused before building
            params, registered = registered_params(params, tracking_uri, earlier)
            alias = _promote_alias(promote_alias, registered)
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
                    _write_back_push(resolved, registered, tracking_uri, built["role"], built)
            deployed = timed("deploy", 4, lambda: _deploy_stage(params, resolved, settings))
            provenance.after_deploy(params.app, provenance.Target.of(resolved, registered, tracking_uri), deployed, alias)
            console.ok(f"{params.app} run {params.run_id} serves on {deployed['url']}/predict")
            bento, gateway, deployed = (with_registered(r, registered) for r in (bento, gateway, deployed))
            return {
                "app": params.app, "url": deployed["url"], "local_url": deployed["local_url"], "timings": timings,
                "resolve": resolved.model_dump(exclude={"input_example"}), "bento": bento, "gateway": gateway, "deploy": deployed,
            }

        run_command("pipeline", json_path, body)
