"""experiment id + run id -> the model's files in the local cache, described.

The one entry point is `resolve()`. It picks the finder (NAS when given, else
the tracking URI), chooses one model deterministically, fetches it through the
atomic cache and returns a ``Resolved`` record (records.py): everything later stages need.
``describe`` reads a cached model folder into that record (resolve/earlier.py uses it too).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pydantic import BaseModel

from home_mlops import console, settings
from home_mlops.resolve.cache import ModelCache, source_key
from home_mlops.resolve.described import remember
from home_mlops.errors import BadInput, NotFound
from home_mlops.resolve.mlflow_errors import translate_errors
from home_mlops.params import JobParams, ModelRef
from home_mlops.records import Resolved
from home_mlops.resolve.locate import ModelLocation, NasFinder, TrackingFinder
from home_mlops.resolve.mlmodel import (
    MODEL_ID, check_model_paths, checked_id, flavors, input_example, parse_signature, python_version, read_mlmodel,
    requirement_lines,
)
from home_mlops.resolve.requirements import clean_requirements


# The one record of a resolved run (records.py); the old name stays for the modules that use it.
ResolvedModel = Resolved


class RegisteredVersion(BaseModel):
    """The registered model version a models:/ RUN_ID named, as the registry answered."""

    uri: str  # as given: models:/<name>@<alias> or models:/<name>/<version>
    name: str
    version: str
    alias: str
    run_id: str
    model_id: str | None
    tracking_uri: str


_LOGGED_MODEL_SOURCE = re.compile(rf"models:/({MODEL_ID.pattern})")


def _version_model_id(found) -> str | None:
    """The version's logged model: its model_id, or (the REST API does not always return that field)
    the logged model its source names."""
    if getattr(found, "model_id", None):
        return checked_id({"model_id": found.model_id}, "model_id")
    match = _LOGGED_MODEL_SOURCE.fullmatch(found.source or "")
    return match[1] if match else None


def _lookup(client, ref: ModelRef, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        return client.get_model_version(ref.name, ref.version)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise NotFound(
            f"{ref.uri} is not in the model registry of {uri} ({exc.message[:200]})",
            "a registered model with that " + ("alias" if ref.alias else "version"),
            "check the name and the alias or version on the MLflow UI's Models page",
        ) from None


def registered_version(params: JobParams, tracking_uri: str | None) -> tuple[JobParams, RegisteredVersion | None]:
    """A models:/ RUN_ID looked up in the tracking server's model registry: the params with the
    version's run id in its place, and the version. A run id passes through unchanged."""
    ref = ModelRef.of(params.run_id)
    if ref is None:
        return params, None
    if params.nas:
        raise BadInput(
            f"RUN_ID {ref.uri} names a registered model, which only a tracking server's model registry knows",
            "with NAS set (files only, no tracking server) a 32-character run id",
            "leave NAS empty and set MLFLOW_TRACKING_URI (or --tracking-uri), or give the version's run id",
        )
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    with translate_errors(f"model registry of {uri} ({ref.uri})"):
        found = _lookup(client, ref, uri)
        if not found.run_id:
            raise NotFound(f"{ref.uri} (version {found.version}) was registered without a run",
                           "a version registered from a run's model", "register the model from its run")
        run_id = JobParams.parse(experiment_id=params.experiment_id, run_id=found.run_id, need_app=False).run_id
        owner = client.get_run(run_id).info.experiment_id
    if owner != params.experiment_id:
        raise BadInput(
            f"{ref.uri} is version {found.version}, run {run_id} of experiment {owner}, "
            f"not of experiment {params.experiment_id}",
            f"EXPERIMENT_ID {owner} for this model version",
            "check the experiment and the alias in the MLflow UI",
        )
    version = RegisteredVersion(uri=ref.uri, name=ref.name, version=str(found.version), alias=ref.alias,
                                run_id=run_id, model_id=_version_model_id(found), tracking_uri=uri)
    console.ok(f"{ref.uri} is version {version.version}: run {run_id}" +
               (f", logged model {version.model_id}" if version.model_id else ""))
    return dataclasses.replace(params, run_id=run_id), version


def choose(models: list[ModelLocation], model_name: str | None, run_id: str) -> ModelLocation:
    if model_name:  # a logged model's name, or its id (m-...) where the name is not known
        named = [m for m in models if model_name in (m.name, m.model_id)]
        if not named:
            names = ", ".join(sorted({f"{m.name} ({m.model_id})" if m.model_id else m.name for m in models}))
            raise NotFound(
                f"run {run_id} has no model named {model_name!r}",
                f"one of: {names}",
                "pass --model-name with one of these names",
            )
        models = named
    # Newest first; the id breaks ties so the choice never depends on listing order.
    ordered = sorted(models, key=lambda m: (-m.created, m.model_id or m.name))
    chosen = ordered[0]
    if len(ordered) > 1:
        others = ", ".join(f"{m.name} ({m.model_id or m.artifact_uri})" for m in ordered[1:])
        console.warn(
            f"run {run_id} logged {len(ordered)} models; using the newest, {chosen.name} "
            f"({chosen.model_id or chosen.artifact_uri}). Others: {others}. Pick one with --model-name NAME or ID."
        )
    return chosen


def resolve(
    experiment_id: str,
    run_id: str,
    *,
    nas: str = "",
    tracking_uri: str | None = None,
    model_name: str | None = None,
    cache: ModelCache | None = None,
) -> ResolvedModel:
    finder = NasFinder(nas) if nas else TrackingFinder(settings.tracking_uri(tracking_uri))
    where = f"NAS {nas}" if nas else f"tracking URI {finder.tracking_uri}"
    console.step(f"finding the model of run {run_id} (experiment {experiment_id}) via {where}")
    location = choose(finder.find(experiment_id, run_id), model_name, run_id)

    cache = cache or ModelCache()
    source = finder.root_uri if nas else finder.tracking_uri
    key = source_key(source, location.cache_key)
    manifest = cache.lookup(key)
    hit = manifest is not None
    if hit:
        console.ok(f"model {location.cache_key} already in the cache (hashes verified)")
    else:
        console.step(f"downloading {location.model_uri} into the cache")
        manifest = cache.fill(
            key,
            lambda dst: finder.download(location, dst),
            {"model_uri": location.model_uri, "artifact_uri": location.artifact_uri, "source": source},
        )
    resolved = describe(cache.entry(key), location, source="nas" if nas else "tracking",
                        content_digest=manifest["content_digest"], cache_hit=hit)
    return remember(resolved, cache)  # a later stage's --from reads it instead of describing again


def describe(local: Path, location: ModelLocation, *, source: str, content_digest: str, cache_hit: bool) -> Resolved:
    """The record of a model folder in the cache (its files already hashed against the manifest):
    MLmodel, signature, input example and requirements read and checked from the files themselves."""
    mlmodel = read_mlmodel(local)
    logged_by = checked_id(mlmodel, "run_id")
    if logged_by and logged_by != location.run_id:
        raise NotFound(f"model {location.model_uri} was logged by run {logged_by}, not {location.run_id}")
    check_model_paths(local, mlmodel)
    model_flavors = flavors(mlmodel)
    reqs = clean_requirements(
        requirement_lines(local), model_flavors, f"the model's requirements.txt ({location.model_uri})"
    )
    return Resolved(
        experiment_id=location.experiment_id,
        run_id=location.run_id,
        model_id=location.model_id,
        model_name=location.name,
        model_uri=location.model_uri,
        artifact_uri=location.artifact_uri,
        source=source,
        flavors=model_flavors,
        signature=parse_signature(mlmodel),
        input_example=input_example(local, mlmodel),
        python_version=python_version(local, mlmodel),
        requirements=reqs.kept,
        dropped_requirements=reqs.dropped,
        unpinned_requirements=reqs.unpinned,
        content_digest=content_digest,
        local_path=str(Path(local)),
        cache_hit=cache_hit,
    )
