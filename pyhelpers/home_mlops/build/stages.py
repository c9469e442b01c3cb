"""The build stages as plain functions: a ``Resolved`` record in, a record out (records.py).

The CLI and `pipeline` call these; each returns what its --json result holds. The app's
serving mode decides which images exist (``SERVING_ROLES``): ``bento_build`` makes the
BentoML image (modes bento, bento+gateway), ``fastapi_build`` the gateway (bento+gateway)
or the standalone server (fastapi); asked for a role the mode does not use, a stage
builds nothing and says so (``status: skipped``).
"""
from __future__ import annotations

from home_mlops.build.bento import build_bento, import_model, model_version, render_source
from home_mlops.build.bento_image import render_context
from home_mlops.build.docker_build import INPUTS_LABEL, build_image
from home_mlops.build.labels import image_labels
from home_mlops.params import JobParams
from home_mlops.platform.host import BASE_IMAGE
from home_mlops.build.registry import check_before_build, push
from home_mlops.deploy.app_settings import SERVING_ROLES
from home_mlops.records import BentoImage, BuiltImage, Deployment, SkippedBuild
from home_mlops.resolve.resolver import ResolvedModel
from home_mlops import console, settings


def image_ref(params: JobParams, role: str, resolved: ResolvedModel) -> str:
    """<AR_NAME>/<app>-<role>:<first 12 of run id>-<first 8 of model digest> (deterministic)."""
    return f"{params.registry}/{params.app}-{role}:{model_version(resolved)}"


def check_python(resolved: ResolvedModel, base_image: str) -> None:
    if resolved.python_version and not resolved.python_version.startswith("3.11") and base_image == BASE_IMAGE:
        console.warn(
            f"the model was trained on Python {resolved.python_version}; {BASE_IMAGE} has Python 3.11. "
            "Pass --base-image with a matching Python if the model fails to load."
        )


def skipped(params: JobParams, command: str, serving: str, what: str) -> SkippedBuild:
    """The result of a build the app's serving mode does not need (exit 0)."""
    reason = (f"app {params.app} is served in mode {serving}, which runs "
              f"{' + '.join(SERVING_ROLES[serving])}: no {what} to build")
    console.info(f"{command} skipped: {reason}")
    return SkippedBuild(reason=reason, app=params.app, serving=serving)


def fastapi_role(serving: str) -> str | None:
    """What fastapi-build makes in ``serving``: the gateway, the standalone server, or nothing."""
    return next((r for r in SERVING_ROLES[serving] if r in ("gateway", "server")), None)


def bento_build(params: JobParams, resolved: ResolvedModel, *, base_image: str, do_push: bool, force: bool,
                serving: str = "bento+gateway") -> BentoImage | SkippedBuild:
    if "bento" not in SERVING_ROLES[serving]:
        return skipped(params, "bento-build", serving, "BentoML image")
    if not resolved.signature:
        console.warn("the model has no signature: inputs are passed through unchecked")
    check_python(resolved, base_image)
    ref = image_ref(params, "bento", resolved)
    if do_push:
        check_before_build(ref)
    model = import_model(params.app, resolved)
    work = settings.builds_dir() / params.app / model_version(resolved)
    source = render_source(work / "bento", params.app, resolved, base_image, resolved.requirements)
    bento = build_bento(source, model_version(resolved))
    context = render_context(work / "image", params.app, source, bento, model, base_image, resolved.requirements)
    info = build_image(context, ref, image_labels(params.app, "bento", resolved), what="bento")
    digest = push(ref, info.labels, force=force) if do_push else None
    return BentoImage(
        **image_result(params, resolved, info, digest), role="bento", serving=serving, layers=len(info.layers),
        bento_tag=str(bento.tag), model_tag=source.model_tag, inputs_digest=info.labels.get(INPUTS_LABEL),
    )


def fastapi_build(params: JobParams, resolved: ResolvedModel, *, base_image: str, do_push: bool, force: bool,
                  serving: str = "bento+gateway") -> BuiltImage | SkippedBuild:
    """The FastAPI front door of the app's mode: the gateway (bento+gateway) or the server (fastapi)."""
    role = fastapi_role(serving)
    if role is None:
        return skipped(params, "fastapi-build", serving, "FastAPI image (the BentoML server is the front door)")
    if role == "server":
        check_python(resolved, base_image)
        from home_mlops.build.server_image import build_server_image as build
    else:
        from home_mlops.build.gateway_image import build_gateway_image as build
    ref = image_ref(params, role, resolved)
    if do_push:
        check_before_build(ref)
    info = build(params.app, resolved, ref, base_image, image_labels(params.app, role, resolved))
    digest = push(ref, info.labels, force=force) if do_push else None
    return BuiltImage(**image_result(params, resolved, info, digest), role=role, serving=serving)


def image_result(params: JobParams, resolved: ResolvedModel, info, digest: str | None) -> dict:
    """The fields of BuiltImage both build commands fill alike."""
    return {
        "app": params.app,
        "experiment_id": resolved.experiment_id,
        "run_id": resolved.run_id,
        "model_id": resolved.model_id,
        "image": info.ref,
        "tag": info.ref.rsplit(":", 1)[1],
        "digest": digest,
        "image_id": info.id,
        "size_bytes": info.size_bytes,
        "build_seconds": info.build_seconds,
        "reused": info.reused,
        "pushed": bool(digest),
        "resolved": resolved,  # what a later stage's --from starts from
    }


def deploy_stage(params: JobParams, resolved: ResolvedModel, *, settings) -> Deployment:
    """Deploy the run's images of the app's serving mode (as bento-build / fastapi-build tagged them)."""
    from home_mlops.deploy.switch import Release, deploy
    from home_mlops.build.registry import auth_for

    roles = SERVING_ROLES[settings.serving]
    refs = {role: image_ref(params, role, resolved) if role in roles else "" for role in ("bento", "gateway", "server")}
    smoke = {"dataframe_records": resolved.input_example} if resolved.input_example else None
    release = Release(params.app, resolved.experiment_id, resolved.run_id, resolved.model_id or "",
                      refs["bento"], refs["gateway"], smoke, refs["server"])
    return deploy(release, settings, registry_auth=auth_for(refs[roles[0]]))
