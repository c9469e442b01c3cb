"""The five job parameters, validated once, in one place, for every command.

Jenkins users type these into a form, so each check says what was wrong and
what a valid value looks like. Values are never passed to a shell, but we
still refuse anything outside a strict grammar: a value that passes here is
safe in a path, a URL, a Docker tag and a log line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from home_mlops.errors import BadInput

DEFAULT_REGISTRY = "127.0.0.1:5000/home-mlops"

_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_EXPERIMENT_ID = re.compile(r"[0-9]{1,19}")
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# A registered model version named by alias or number (MLflow's alias grammar, narrowed: no 'vN', no 'latest').
_MODELS_URI = re.compile(
    r"models:/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})"
    r"(?:@(?P<alias>[A-Za-z_][A-Za-z0-9_-]{0,62})|/(?P<version>[1-9][0-9]{0,9}))"
)
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
_RESERVED_ALIAS = re.compile(r"[vV][0-9]+|latest")
# Docker reference grammar (distribution/reference), prefix without a tag.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_PART}(?:/{_PATH_PART})*")
# Bucket and object-prefix characters we accept in a NAS URI.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._@+=,-]+")
NAS_SCHEMES = ("gs", "s3", "file")


def _printable(value: str) -> str:
    """A value shown back to the user: cut, and control characters made visible."""
    shown = value if len(value) <= 80 else value[:77] + "..."
    return repr(shown)


def validate_app(value: str) -> str:
    if not value or not _DNS_LABEL.fullmatch(value):
        raise BadInput(
            f"APP_NAME {_printable(value)} is not a valid app name",
            "a DNS label: 1-63 lowercase letters, digits or '-', not starting or ending with '-' "
            "(e.g. tabular-iris-multi-classifier)",
            "use the name of a folder under training/ or of a job in jobs/",
        )
    return value


def validate_experiment_id(value: str) -> str:
    if not value or not _EXPERIMENT_ID.fullmatch(value):
        raise BadInput(
            f"EXPERIMENT_ID {_printable(value)} is not an MLflow experiment id",
            "the experiment's numeric id, e.g. 1 or 742983529384 (shown in the MLflow UI "
            "and printed by the training script)",
            "copy the id, not the experiment's name",
        )
    return value


def validate_run_id(value: str, *, allow_models_uri: bool = False) -> str:
    if value and _RUN_ID.fullmatch(value):
        return value
    if allow_models_uri and value.startswith("models:/"):
        ModelRef.parse(value)
        return value
    raise BadInput(
        f"RUN_ID {_printable(value)} is not an MLflow run id",
        "32 lowercase hexadecimal characters, e.g. 3f2a9c0d4b5e6f708192a3b4c5d6e7f8"
        + (", or a registered model version: models:/<name>@<alias> or models:/<name>/<version>"
           if allow_models_uri else ""),
        "copy the run id from the MLflow UI or from the training script's output",
    )


def validate_alias(value: str) -> str:
    """A registry alias home-mlops may move (--promote-alias)."""
    if not _ALIAS.fullmatch(value) or _RESERVED_ALIAS.fullmatch(value):
        raise BadInput(
            f"alias {_printable(value)} is not a model registry alias",
            "letters, digits, '_', '-' starting with a letter or '_', at most 63 (not 'latest' or 'v<number>')",
            "e.g. production or champion",
        )
    return value


@dataclass(frozen=True)
class ModelRef:
    """A registered model version given in place of a run id: by alias or by version number."""

    name: str
    alias: str = ""
    version: str = ""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"

    @classmethod
    def parse(cls, value: str) -> "ModelRef":
        match = _MODELS_URI.fullmatch(value)
        if not match or (match["alias"] and _RESERVED_ALIAS.fullmatch(match["alias"])):
            raise BadInput(
                f"RUN_ID {_printable(value)} is not a registered model version",
                "models:/<name>@<alias> or models:/<name>/<version>: a name of letters, digits, '_', '.', '-' "
                "(at most 128), an alias of letters, digits, '_', '-' starting with a letter or '_' "
                "(not 'latest' or 'v<number>'), a version of digits",
                "copy the name and alias from the MLflow UI's model registry page",
            )
        return cls(match["name"], match["alias"] or "", match["version"] or "")

    @classmethod
    def of(cls, value: str) -> "ModelRef | None":
        """The reference when ``value`` is a models:/ URI, None for a run id."""
        return cls.parse(value) if value.startswith("models:/") else None


def validate_model_name(value: str) -> str:
    if not _MODEL_NAME.fullmatch(value):
        raise BadInput(
            f"model name {_printable(value)} is not valid",
            "letters, digits, '_', '.', '-' (the name given to log_model)",
        )
    return value


def validate_nas(value: str) -> str:
    """An artifact root: /abs/path, file:///abs/path, gs://bucket[/prefix] or s3://bucket[/prefix]."""
    if not value:
        return value
    bad = BadInput(
        f"NAS {_printable(value)} is not a supported artifact root",
        "an absolute path (/srv/mlruns), file:///srv/mlruns, gs://bucket/prefix or "
        "s3://bucket/prefix, with no '..', spaces, quotes or shell characters",
        "use the experiment's artifact root without the experiment id (the folder that "
        "holds <experiment_id>/)",
    )
    if len(value) > 1024:
        raise bad
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "file", value
        if not value.startswith("/"):
            raise bad
    elif scheme not in NAS_SCHEMES:
        raise bad
    if scheme == "file":
        if not rest.startswith("/"):
            raise bad
        segments = [s for s in rest.split("/") if s]
    else:
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise bad
        segments = [s for s in prefix.split("/") if s]
    for segment in segments:
        if segment in (".", "..") or not _PATH_SEGMENT.fullmatch(segment):
            raise bad
    return value.rstrip("/") or "/"


def validate_registry(value: str) -> str:
    if not value or len(value) > 255 or not _REGISTRY.fullmatch(value):
        raise BadInput(
            f"AR_NAME {_printable(value)} is not an image repository prefix",
            "host[:port]/path in Docker's reference grammar, lowercase path, no tag, e.g. "
            "127.0.0.1:5000/home-mlops, docker.io/myteam or "
            "europe-west1-docker.pkg.dev/my-project/models",
            "drop any ':tag' or '@digest' and any trailing '/'",
        )
    return value


@dataclass(frozen=True)
class JobParams:
    """The five parameters every Jenkins job passes (APP_NAME is optional for resolve)."""

    experiment_id: str
    run_id: str  # a run id, or a models:/ URI until resolve.registered_version swaps in the version's run
    app: str = ""
    nas: str = ""
    registry: str = DEFAULT_REGISTRY

    @classmethod
    def parse(
        cls,
        *,
        experiment_id: str | None,
        run_id: str | None,
        app: str | None = None,
        nas: str | None = None,
        registry: str | None = None,
        need_app: bool = True,
    ) -> "JobParams":
        # Strip only surrounding blanks that a pasted value picks up; inner ones stay and fail.
        experiment_id = (experiment_id or "").strip(" ")
        run_id = (run_id or "").strip(" ")
        app = (app or "").strip(" ")
        if need_app or app:
            validate_app(app)
        return cls(
            experiment_id=validate_experiment_id(experiment_id),
            run_id=validate_run_id(run_id, allow_models_uri=True),
            app=app,
            nas=validate_nas((nas or "").strip(" ")),
            registry=validate_registry((registry or DEFAULT_REGISTRY).strip(" ")),
        )
