"""experiment id + run id -> the model's files in the local cache, described.

The one entry point is `resolve()`. It picks the finder (NAS when given, else
the tracking URI), chooses one model deterministically, fetches it through the
atomic cache and returns a ResolvedModel: everything later stages need.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import console, settings
from .cache import ModelCache, source_key
from .errors import NotFound
from .locate import ModelLocation, NasFinder, TrackingFinder
from .mlmodel import (
    check_model_paths, checked_id, flavors, input_example, parse_signature, python_version, read_mlmodel,
    requirement_lines,
)
from .requirements import clean_requirements


class ResolvedModel(BaseModel):
    experiment_id: str
    run_id: str
    model_id: str | None
    model_name: str
    model_uri: str
    artifact_uri: str
    source: str  # "nas" or "tracking"
    flavors: list[str]
    signature: dict[str, Any] | None
    input_example: list[dict[str, Any]] | None
    python_version: str | None
    requirements: list[str]
    dropped_requirements: list[str]
    unpinned_requirements: list[str]  # named without a version by the model; the image lock pins them
    content_digest: str
    local_path: str
    cache_hit: bool


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
    local = cache.entry(key)
    mlmodel = read_mlmodel(local)
    logged_by = checked_id(mlmodel, "run_id")
    if logged_by and logged_by != run_id:
        raise NotFound(f"model {location.model_uri} was logged by run {logged_by}, not {run_id}")
    check_model_paths(local, mlmodel)
    model_flavors = flavors(mlmodel)
    reqs = clean_requirements(
        requirement_lines(local), model_flavors, f"the model's requirements.txt ({location.model_uri})"
    )
    return ResolvedModel(
        experiment_id=experiment_id,
        run_id=run_id,
        model_id=location.model_id,
        model_name=location.name,
        model_uri=location.model_uri,
        artifact_uri=location.artifact_uri,
        source="nas" if nas else "tracking",
        flavors=model_flavors,
        signature=parse_signature(mlmodel),
        input_example=input_example(local, mlmodel),
        python_version=python_version(local, mlmodel),
        requirements=reqs.kept,
        dropped_requirements=reqs.dropped,
        unpinned_requirements=reqs.unpinned,
        content_digest=manifest["content_digest"],
        local_path=str(Path(local)),
        cache_hit=hit,
    )
