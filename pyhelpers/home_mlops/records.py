"""The records handed from stage to stage, and what the --json result files hold.

resolve -> ``Resolved`` -> bento-build / fastapi-build -> ``BuiltImage`` (``BentoImage``)
-> deploy -> ``Deployment``. Each is a frozen pydantic model: a stage returns one, the CLI
writes ``record.model_dump(mode="json")`` plus the envelope every result has (``command``,
``ok``, ``summary``, ``seconds``). A build result also carries the ``Resolved`` record it was
built from, so a later stage can start from that file (``--from``) instead of resolving again
(resolve/earlier.py). ``home-mlops schema`` prints the JSON schema of each command's result,
generated from these classes; docs/schemas/ holds the published copies (a test keeps them equal).

Fields are only ever added (the Groovy steps and users read these files): a new field needs
a default, so a file written before it still loads.
"""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

RUN_ID_PATTERN = r"^[0-9a-f]{32}$"
EXPERIMENT_ID_PATTERN = r"^[0-9]{1,19}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class Record(BaseModel):
    """Frozen: a stage's result is handed on, never edited. Unknown keys are ignored when a
    record is read back from a file (a newer home-mlops may have added fields)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Resolved(Record):
    """A run's model, fetched into the local cache and described (resolve/resolver.py makes it)."""

    experiment_id: str = Field(pattern=EXPERIMENT_ID_PATTERN)
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    model_id: str | None = Field(description="The logged model's id (MLflow 3), else null.")
    model_name: str
    model_uri: str = Field(description="models:/<model_id> or runs:/<run_id>/<name>.")
    artifact_uri: str = Field(description="The folder that holds MLmodel, where it was found.")
    source: str = Field(pattern=r"^(nas|tracking)$", description="Where it was found: NAS or the tracking server.")
    flavors: list[str]
    signature: dict[str, Any] | None = Field(description="The model signature as MLmodel holds it, or null.")
    input_example: list[dict[str, Any]] | None = Field(
        default=None, description="The logged input example as records (absent from the pipeline's copy).")
    python_version: str | None
    requirements: list[str] = Field(description="The model's requirements, cleaned (what the images install).")
    dropped_requirements: list[str]
    unpinned_requirements: list[str] = Field(
        description="Named by the model without a version; the image lock pins them.")
    content_digest: str = Field(pattern=SHA256_PATTERN, description="sha256 over the model folder's file digests.")
    local_path: str = Field(description="The model's folder in the local cache.")
    cache_hit: bool = Field(description="The model was already in the cache (its files hashed again).")


class BuiltImage(Record):
    """An image built for a run (fastapi-build; bento-build adds BentoImage's fields)."""

    app: str
    experiment_id: str = Field(pattern=EXPERIMENT_ID_PATTERN)
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    model_id: str | None
    image: str = Field(description="<AR_NAME>/<app>-<role>:<tag>.")
    tag: str = Field(description="<first 12 of run id>-<first 8 of content digest>: same run, same tag.")
    digest: str | None = Field(description="The registry's manifest digest when pushed, else null.")
    image_id: str
    size_bytes: int
    build_seconds: float
    reused: bool = Field(description="An image with the same inputs existed: nothing was built.")
    pushed: bool
    role: str = Field(default="", description="What the image runs: bento, gateway or server.")
    serving: str = Field(default="bento+gateway", description="The app's serving mode it was built for.")
    resolved: Resolved | None = Field(
        default=None, description="The resolved run the image was built from: what --from reads.")


class BentoImage(BuiltImage):
    """bento-build's result: the BentoML model-server image."""

    layers: int
    bento_tag: str
    model_tag: str
    inputs_digest: str | None = Field(description="Digest of the build's inputs (the image's label).")


class SkippedBuild(Record):
    """A build the app's serving mode does not use (exit 0, nothing built)."""

    status: Literal["skipped"] = "skipped"
    reason: str
    app: str
    serving: str


class Deployment(Record):
    """deploy's result (and deploy --rollback's): what serves the app now, and where."""

    app: str
    run_id: str
    url: str = Field(description="How other machines call it: http://<host name or bind>:<port>.")
    local_url: str = Field(description="http://127.0.0.1:<port>: what the host itself and the probes use.")
    port: int
    bind: str
    bento_image: str
    gateway_image: str
    bento_container: str
    gateway_container: str
    previous_run_id: str | None
    switch_seconds: float
    compose_file: str
    experiment_id: str = ""
    model_id: str = ""
    bento_port: int = 0
    deploy_seconds: float = 0.0
    serving: str = "bento+gateway"
    server_image: str = ""
    server_container: str = ""
    front_door: str = "gateway"

    def to_dict(self) -> dict[str, Any]:
        """The deploy result's dict (what deploy/switch.py's callers used before the record)."""
        return as_result(self)


class ClusterDeployment(Record):
    """deploy's result with the k8s target (and deploy --rollback's): what serves the app in the
    cluster now (k8s/apply.py makes it)."""

    app: str
    run_id: str
    target: Literal["k8s"] = "k8s"
    namespace: str
    url: str = Field(description="The Ingress host, else the front door Service's name inside the cluster.")
    local_url: Literal[""] = Field("", description="Always empty: the cluster is not this host.")
    previous_run_id: str = Field(description="The run the front door served before (empty if none).")
    revisions: dict[str, int] = Field(description="Deployment name -> its revision now.")
    experiment_id: str = ""
    model_id: str = ""
    serving: str = ""
    images: dict[str, str] = Field(default_factory=dict, description="role -> image@digest deployed (deploy only).")
    deploy_seconds: float = 0.0


class RegisteredModel(Record):
    """The registered model version a models:/ RUN_ID named (a result carries it only then)."""

    uri: str
    name: str
    version: str
    alias: str
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    model_id: str | None


class Named(Record):
    """A result's ``registered_model``: present only when RUN_ID was a models:/ URI."""

    registered_model: RegisteredModel | None = Field(default=None, description="Only when RUN_ID was a models:/ URI.")


class Envelope(Named):
    """What every successful result has around its record."""

    command: str
    ok: bool = Field(description="true: this schema; a failure has ok false, exit_code, error, log_tail.")
    summary: str = Field(description="The summary line (the Jenkins build description).")
    seconds: float


class ResolveJson(Envelope, Resolved):
    pass


class BentoBuildJson(Envelope, BentoImage):
    pass


class FastapiBuildJson(Envelope, BuiltImage):
    pass


class SkippedBuildJson(Envelope, SkippedBuild):
    pass


class DeployJson(Envelope, Deployment):
    pass


class ClusterDeployJson(Envelope, ClusterDeployment):
    pass


class NamedBento(Named, BentoImage):
    pass


class NamedImage(Named, BuiltImage):
    pass


class NamedDeployment(Named, Deployment):
    pass


class NamedClusterDeployment(Named, ClusterDeployment):
    pass


class PipelineJson(Envelope):
    app: str
    url: str
    local_url: str
    timings: dict[str, float] = Field(description="Seconds per stage.")
    resolve: Resolved
    bento: NamedBento | SkippedBuild = Field(description="bento-build's result.")
    gateway: NamedImage | SkippedBuild = Field(description="fastapi-build's result (the gateway or the server).")
    deploy: NamedDeployment | NamedClusterDeployment = Field(description="deploy's result (this host, or k8s).")


RESULTS: dict[str, Any] = {
    "resolve": ResolveJson, "bento-build": Union[BentoBuildJson, SkippedBuildJson],
    "fastapi-build": Union[FastapiBuildJson, SkippedBuildJson], "deploy": Union[DeployJson, ClusterDeployJson],
    "pipeline": PipelineJson,
}


def result_schema(command: str) -> dict[str, Any]:
    """The JSON schema of ``command``'s successful --json result."""
    schema = TypeAdapter(RESULTS[command]).json_schema(mode="serialization")
    schema["$id"] = f"https://home-mlops.local/schemas/{command}.schema.json"
    schema["title"] = f"home-mlops {command} result"
    return schema


def as_result(record: Record) -> dict[str, Any]:
    """A record as its --json result holds it (plain JSON values)."""
    return record.model_dump(mode="json")
