"""`home-mlops k8s render`: an app's Kubernetes manifests (or a KServe InferenceService) as YAML files."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from home_mlops import console, env
from home_mlops.cli.common import AppOpt, ExpOpt, JsonOpt, ModelNameOpt, NasOpt, RegOpt, RunOpt, TrackOpt, job_params, run_command

k8s_app = typer.Typer(help="The Kubernetes target: render an app's manifests.", no_args_is_help=True)

# The cluster settings: option > environment > the app's entry in jobs/projects.yaml > jobs/defaults.yaml > default.
NamespaceOpt = typer.Option(None, "--namespace", envvar=env.NAMESPACE.name,
                            help="Namespace of the app's objects (default home-mlops).")
K8S_OPTIONS = {
    "replicas": typer.Option(None, "--replicas", envvar=env.REPLICAS.name,
                             help="Pods per role; the front door's HPA minimum (default 1)."),
    "max_replicas": typer.Option(None, "--max-replicas", envvar=env.MAX_REPLICAS.name,
                                 help="The front door's HPA maximum (default 3)."),
    "cpu_target_percent": typer.Option(None, "--cpu-target-percent", envvar=env.CPU_TARGET_PERCENT.name,
                                       help="CPU use the HPA scales at, % of the request (default 80)."),
    "ingress_host": typer.Option(None, "--ingress-host", envvar=env.INGRESS_HOST.name,
                                 help="Host name of an Ingress to the front door (default: no Ingress)."),
    "ingress_class": typer.Option(None, "--ingress-class", envvar=env.INGRESS_CLASS.name,
                                  help="IngressClass of that Ingress (default: the cluster's default)."),
    "image_pull_secret": typer.Option(None, "--image-pull-secret", envvar=env.IMAGE_PULL_SECRET.name,
                                      help="Secret the nodes pull the images with (docs/kubernetes.md)."),
    "canary_traffic_percent": typer.Option(None, "--canary-traffic-percent", envvar=env.CANARY_TRAFFIC_PERCENT.name,
                                           help="KServe only: % of traffic to the new revision."),
}


@k8s_app.command("render")
def render_command(
    app_name: Optional[str] = AppOpt, experiment_id: Optional[str] = ExpOpt, run_id: Optional[str] = RunOpt,
    nas: Optional[str] = NasOpt, registry: Optional[str] = RegOpt, tracking_uri: Optional[str] = TrackOpt,
    model_name: Optional[str] = ModelNameOpt,
    out: Path = typer.Option(..., "--out", help="Folder for the YAML files (one per object)."),
    kserve: bool = typer.Option(False, "--kserve", help="A KServe InferenceService for the front door."),
    results: Optional[list[Path]] = typer.Option(
        None, "--from", help="A build result (--json of bento-build, fastapi-build or pipeline) with an image's "
                             "digest; repeatable. Without it the digests come from the registry."),
    serving: Optional[str] = typer.Option(None, "--serving", envvar=env.SERVING.name,
                                          help="Serving mode (default bento+gateway)."),
    cpus: Optional[str] = typer.Option(None, "--cpus", envvar=env.CPUS.name, help="CPUs of the model server."),
    memory: Optional[str] = typer.Option(None, "--memory", envvar=env.MEMORY.name, help="Memory of the model server."),
    ready_timeout: Optional[str] = typer.Option(None, "--ready-timeout", envvar=env.READY_TIMEOUT.name,
                                                help="Seconds a rollout may take (the progress deadline)."),
    namespace: Optional[str] = NamespaceOpt,
    replicas: Optional[str] = K8S_OPTIONS["replicas"], max_replicas: Optional[str] = K8S_OPTIONS["max_replicas"],
    cpu_target_percent: Optional[str] = K8S_OPTIONS["cpu_target_percent"],
    ingress_host: Optional[str] = K8S_OPTIONS["ingress_host"], ingress_class: Optional[str] = K8S_OPTIONS["ingress_class"],
    image_pull_secret: Optional[str] = K8S_OPTIONS["image_pull_secret"],
    canary_traffic_percent: Optional[str] = K8S_OPTIONS["canary_traffic_percent"],
    json_path: Optional[str] = JsonOpt,
) -> None:
    """Write the app's manifests for the run: Deployment + Service per role, PDB, HPA, Ingress, Namespace."""

    def body() -> dict[str, Any]:
        from home_mlops.build.trust import require_trusted_registry
        from home_mlops.cli.run_options import registered_params, resolve_run
        from home_mlops.deploy.app_settings import resolve_settings
        from home_mlops.k8s.kserve import render_kserve
        from home_mlops.k8s.release import cluster_release, digests_from_results
        from home_mlops.k8s.render import render, write

        params = job_params(app_name, experiment_id, run_id, nas, registry)
        settings = resolve_settings(params.app, dict(
            cpus=cpus, memory=memory, ready_timeout=ready_timeout, serving=serving, namespace=namespace,
            replicas=replicas, max_replicas=max_replicas, cpu_target_percent=cpu_target_percent,
            ingress_host=ingress_host, ingress_class=ingress_class, image_pull_secret=image_pull_secret,
            canary_traffic_percent=canary_traffic_percent))
        settings.check_supported()
        digests = digests_from_results(list(results or []))
        if not digests:  # the registry is asked: refused before anything else when it is not trusted
            require_trusted_registry(params.registry)
        params, _registered = registered_params(params, tracking_uri)
        resolved = resolve_run(params, tracking_uri, model_name, _registered)
        release = cluster_release(params, resolved, settings.serving, digests)
        objects = render_kserve(release, settings) if kserve else render(release, settings)
        files = write(objects, out)
        for path in files:
            console.ok(f"wrote {path}")
        return {"app": params.app, "run_id": resolved.run_id, "experiment_id": resolved.experiment_id,
                "namespace": settings.namespace, "serving": settings.serving, "kserve": kserve,
                "out": str(out), "files": [p.name for p in files],
                "images": {image.role: image.pinned for image in release.images}}

    run_command("k8s render", json_path, body)
