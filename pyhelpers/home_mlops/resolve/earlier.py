"""Start a stage from an earlier stage's result file (``--from``, ``HOME_MLOPS_FROM``): no second resolve.

A Jenkins build resolves the run once: bento-build's result file carries the ``Resolved``
record it was built from, fastapi-build and deploy start from that file. The file is input
like any other (it sits in a workspace anyone with job access can write), so:

- it is read with a size limit, must be the successful result of resolve, bento-build or
  fastapi-build, and its resolved run must validate as a ``Resolved`` record (exit 2 otherwise);
- the job parameters that are given must name the same app, experiment and run (exit 2 naming
  both); the ones not given are taken from the file;
- nothing but identity is taken from it: the model folder must be an entry of this machine's
  cache, its files are hashed again against the manifest (as every cache hit is), and its
  description (signature, example, requirements) is the one resolve kept beside the cache for
  that content (resolve/described.py), else read again from those files. An entry that is gone
  or changed is resolved again, and must come back with the same content digest.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from home_mlops import console, settings
from home_mlops.errors import BadInput
from home_mlops.params import JobParams, ModelRef, validate_app
from home_mlops.records import RegisteredModel, Resolved
from home_mlops.resolve.cache import ModelCache, _safe_key
from home_mlops.resolve.described import recall

# A result file is a few kB; the input example makes it larger, never this large.
MAX_BYTES = 16 * 1024 * 1024
# The commands whose result holds a resolved run.
TAKES = ("resolve", "bento-build", "fastapi-build")
_HINT = "pass the result file an earlier resolve, bento-build or fastapi-build of this run wrote (--json), or drop --from"


@dataclass(frozen=True)
class Earlier:
    """What an earlier result file says about the run: the identity later stages start from."""

    path: str
    command: str
    app: str  # "" in a resolve result (it names no app)
    resolved: Resolved
    registered: RegisteredModel | None

    @property
    def given_run(self) -> str:
        """The RUN_ID the earlier stage was given: the models:/ URI when it named one."""
        return self.registered.uri if self.registered else self.resolved.run_id


def _bad(path: str, what: str, expected: str = "the JSON result of a successful resolve, bento-build or fastapi-build") -> BadInput:
    return BadInput(f"--from {path}: {what}", expected, _HINT)


def _read(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _bad(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_BYTES:
        raise _bad(path, f"is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(path, f"is not JSON ({type(exc).__name__})") from None
    if not isinstance(parsed, dict):
        raise _bad(path, f"holds a JSON {type(parsed).__name__}, not an object")
    return parsed


def _validated(path: str, model, value, where: str):
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]  # location and message only: the file's values are not echoed
        field = ".".join(str(p) for p in (where, *first["loc"]) if p != "")
        raise _bad(path, f"field {field or where}: {first['msg']}", f"a {model.__name__} record (home-mlops schema)") from None


def load(path: str) -> Earlier:
    """Read and check an earlier result file (exit 2 when it is not one a later stage can start from)."""
    data = _read(path)
    command = data.get("command")
    if command not in TAKES:
        named = isinstance(command, str) and re.fullmatch(r"[a-z][a-z-]{0,30}", command)
        raise _bad(path, f"is the result of {command if named else 'an unknown command'}, which holds no resolved run")
    if data.get("ok") is not True:
        raise _bad(path, f"is the result of a {command} that did not succeed")
    if command == "resolve":
        resolved = _validated(path, Resolved, data, "")
    elif isinstance(data.get("resolved"), dict):
        resolved = _validated(path, Resolved, data["resolved"], "resolved")
    else:
        raise _bad(path, f"this {command} result holds no resolved run (written by an older home-mlops, "
                         "or a build its serving mode skipped)")
    registered = (_validated(path, RegisteredModel, data["registered_model"], "registered_model")
                  if data.get("registered_model") is not None else None)
    app = ""
    if command != "resolve":
        app = data.get("app") if isinstance(data.get("app"), str) else ""
        try:
            validate_app(app)
        except BadInput:
            raise _bad(path, "field app is not a valid app name") from None
        for key in ("experiment_id", "run_id"):
            if data.get(key) != getattr(resolved, key):
                raise _bad(path, f"field {key} differs from its resolved run's")
    if registered is not None and registered.run_id != resolved.run_id:
        raise _bad(path, "registered_model.run_id differs from its resolved run's")
    return Earlier(path=path, command=command, app=app, resolved=resolved, registered=registered)


def check(earlier: Earlier, params: JobParams, model_name: str | None = None) -> None:
    """The job parameters must name what the file resolved (exit 2 naming both)."""
    resolved = earlier.resolved
    pairs = [("EXPERIMENT_ID", params.experiment_id, resolved.experiment_id),
             ("RUN_ID", params.run_id, earlier.given_run if ModelRef.of(params.run_id) else resolved.run_id)]
    if earlier.app:
        pairs.insert(0, ("APP_NAME", params.app, earlier.app))
    if params.nas or resolved.source == "nas":
        pairs.append(("NAS", "set" if params.nas else "empty", "set" if resolved.source == "nas" else "empty"))
    if model_name:
        pairs.append(("--model-name", model_name,
                      model_name if model_name in (resolved.model_name, resolved.model_id) else resolved.model_name))
    for name, given, held in pairs:
        if given != held:
            raise BadInput(
                f"--from {earlier.path} is the {earlier.command} result of {name} {held}, but {name} is {given}",
                f"the same {name} as the stage that wrote the file",
                "pass the result file of this run's own earlier stage, or fix the job parameter",
            )


def job_params(earlier: Earlier, app: str | None, experiment_id: str | None, run_id: str | None,
               nas: str | None, registry: str | None) -> JobParams:
    """The job parameters: those given, and for the rest the file's (then checked against the file)."""
    params = JobParams.parse(app=app or earlier.app or None, experiment_id=experiment_id or earlier.resolved.experiment_id,
                             run_id=run_id or earlier.given_run, nas=nas, registry=registry)
    check(earlier, params)
    return params


def registered_version(earlier: Earlier, params: JobParams, tracking_uri: str | None):
    """The params with the resolved run in place of a models:/ URI, and the version the earlier stage found
    (the registry is not asked again: the whole build uses the version its first stage resolved)."""
    from home_mlops.resolve.resolver import RegisteredVersion

    if earlier.registered is None:
        return params, None
    version = RegisteredVersion(**earlier.registered.model_dump(), tracking_uri=settings.tracking_uri(tracking_uri))
    return dataclasses.replace(params, run_id=earlier.resolved.run_id), version


def reopen(earlier: Earlier, cache: ModelCache | None = None) -> Resolved | None:
    """The resolved run from this machine's cache, its files hashed again; None when the entry is gone or changed."""
    from home_mlops.resolve.locate import ModelLocation
    from home_mlops.resolve.resolver import describe

    resolved = earlier.resolved
    cache = cache or ModelCache()
    local = Path(resolved.local_path)
    if not local.is_absolute() or local.parent.resolve() != cache.root.resolve() or _safe_key(local.name) != local.name:
        raise _bad(earlier.path, "field resolved.local_path is not an entry of this machine's model cache",
                   f"a folder directly under {cache.root}")
    manifest = cache.lookup(local.name)
    if manifest is None or manifest.get("content_digest") != resolved.content_digest:
        return None
    location = ModelLocation(resolved.experiment_id, resolved.run_id, str(manifest.get("artifact_uri", "")),
                             resolved.model_id, resolved.model_name)
    if location.model_uri != manifest.get("model_uri") or location.model_uri != resolved.model_uri:
        return None
    # The description resolve kept for this content (no MLflow import), else read from the files again.
    kept = recall(local.name, resolved.content_digest, cache)
    if kept is not None and (kept.experiment_id, kept.run_id, kept.model_uri, kept.source) == (
            resolved.experiment_id, resolved.run_id, resolved.model_uri, resolved.source):
        found = kept.model_copy(update={"cache_hit": True})
    else:
        found = describe(cache.entry(local.name), location, source=resolved.source,
                         content_digest=resolved.content_digest, cache_hit=True)
    console.ok(f"run {resolved.run_id} from {earlier.path}: model {resolved.model_uri} in the cache (hashes verified)")
    return found


def same_model(earlier: Earlier, resolved: Resolved) -> Resolved:
    """A run resolved again (its cache entry was gone) must be the model the earlier stage used."""
    if resolved.content_digest != earlier.resolved.content_digest or resolved.model_uri != earlier.resolved.model_uri:
        raise BadInput(
            f"--from {earlier.path}: the run's model is now {resolved.model_uri} (content {resolved.content_digest[:12]}), "
            f"the earlier stage used {earlier.resolved.model_uri} (content {earlier.resolved.content_digest[:12]})",
            "the model the earlier stage of this build resolved",
            "run the whole job again (the run's model changed between stages)",
        )
    return resolved
