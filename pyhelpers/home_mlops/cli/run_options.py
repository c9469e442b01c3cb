"""What the build, deploy and pipeline commands share: their options, and the run they start from."""
from __future__ import annotations

from typing import Any

import typer

from home_mlops import console, env
from home_mlops.cli.common import job_params
from home_mlops.errors import BadInput
from home_mlops.params import validate_model_name
from home_mlops.platform.host import BASE_IMAGE

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
PromoteAliasOpt = typer.Option(
    None, "--promote-alias", envvar=env.PROMOTE_ALIAS.name,
    help="After a successful deploy of a models:/ RUN_ID, point this registry alias at the deployed version "
         "(moved back on rollback).")


def deploy_settings(app, port, bind, cpus, memory, ready_timeout, target, serving, **extra):
    from home_mlops.deploy.app_settings import resolve_settings

    settings = resolve_settings(app, dict(port=port, bind=bind, cpus=cpus, memory=memory,
                                          ready_timeout=ready_timeout, target=target, serving=serving, **extra))
    settings.check_supported()  # exit 2 before anything is resolved or built
    return settings


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


def write_back_push(resolved, registered, tracking_uri, role: str, result: dict[str, Any]) -> None:
    from home_mlops.resolve import provenance

    if result.get("pushed"):
        provenance.after_push(provenance.Target.of(resolved, registered, tracking_uri), role, result["image"], result["digest"])


def alias_to_promote(value: str | None, registered) -> str:
    from home_mlops.params import validate_alias

    if not value:
        return ""
    alias = validate_alias(value.strip(" "))
    if registered is None:
        raise BadInput("--promote-alias needs a registered model version",
                       "RUN_ID as models:/<name>@<alias> or models:/<name>/<version>",
                       "give the version by its registry name, or drop --promote-alias")
    return alias
