"""The records the stages hand on (records.py) and the JSON schemas published from them.

No daemon, no MLflow: the schema files in docs/schemas/ must be what the records generate
now (a record changed without `home-mlops schema --out docs/schemas` fails here), every key
the docs and the Groovy steps read stays in its command's schema, and nothing a deploy
returns is lost on its way into the Deployment record.
"""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from conftest import ROOT, cli_env, run_cli
from home_mlops.cli.schema import schema_text
from home_mlops.records import RESULTS, BentoImage, Deployment, Resolved, as_result

SCHEMAS = ROOT / "docs" / "schemas"
RUN = "21d4509ef4af421b9112c1483d557329"
DIGEST = "ab" * 32

# What docs/cli-contract.md ("The JSON result") promises per command, and what the Groovy steps read
# (src/io/homemlops/Summary.groovy, CliStep.groovy: image, digest, url, run_id, app, role, ...).
PROMISED = {
    "resolve": "experiment_id run_id model_id model_uri flavors signature python_version requirements "
               "unpinned_requirements local_path",
    "bento-build": "app experiment_id run_id model_id image tag digest size_bytes build_seconds bento_tag pushed",
    "fastapi-build": "app experiment_id run_id image tag digest size_bytes build_seconds pushed role",
    "deploy": "app run_id url local_url port bind bento_image gateway_image bento_container gateway_container "
              "previous_run_id switch_seconds deploy_seconds compose_file experiment_id model_id bento_port serving",
    "pipeline": "resolve bento gateway deploy url local_url",
}
ENVELOPE = {"command", "ok", "summary", "seconds", "registered_model"}


def resolved(**changes) -> Resolved:
    fields = dict(experiment_id="1", run_id=RUN, model_id="m-" + "0" * 32, model_name="model",
                  model_uri="models:/m-" + "0" * 32, artifact_uri="file:///x", source="tracking", flavors=["python_function"],
                  signature=None, input_example=[{"a": 1.5}], python_version="3.11.9", requirements=["scikit-learn==1.5.2"],
                  dropped_requirements=[], unpinned_requirements=[], content_digest=DIGEST, local_path="/c/m",
                  cache_hit=False)
    return Resolved(**{**fields, **changes})


def properties(schema: dict, name: str | None = None) -> set[str]:
    """The properties of a result schema: of its successful (first) variant when it is a union."""
    if "anyOf" in schema:
        ref = schema["anyOf"][0]["$ref"].rsplit("/", 1)[1]
        return set(schema["$defs"][ref]["properties"])
    return set(schema["properties"])


@pytest.mark.parametrize("command", list(RESULTS))
def test_published_schema_is_what_the_records_generate(command):
    published = SCHEMAS / f"{command}.schema.json"
    assert published.is_file(), f"{published} is missing: run `home-mlops schema --out docs/schemas`"
    assert published.read_text() == schema_text(command), (
        f"the {command} record changed but {published} was not written again: "
        "run `home-mlops schema --out docs/schemas` and commit the files")


def test_no_stale_schema_files():
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(f"{c}.schema.json" for c in RESULTS)


@pytest.mark.parametrize("command", list(PROMISED))
def test_every_promised_key_stays_in_the_schema(command):
    schema = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
    missing = set(PROMISED[command].split()) - properties(schema)
    assert not missing, f"{command} results lost {sorted(missing)}"
    assert ENVELOPE <= properties(schema)


def test_build_results_carry_the_resolved_run_and_skips_are_their_own_variant():
    for command in ("bento-build", "fastapi-build"):
        schema = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
        assert "resolved" in properties(schema)  # what --from reads
        skipped = schema["$defs"][schema["anyOf"][1]["$ref"].rsplit("/", 1)[1]]
        assert skipped["properties"]["status"]["const"] == "skipped"


def test_a_k8s_deploy_is_its_own_variant_of_the_deploy_result():
    """deploy --target k8s has no port, containers or compose file: its result is the ClusterDeployment
    variant, and a consumer tells the two apart by ``target``."""
    schema = json.loads((SCHEMAS / "deploy.schema.json").read_text())
    docker, cluster = (schema["$defs"][v["$ref"].rsplit("/", 1)[1]] for v in schema["anyOf"])
    assert "target" not in docker["properties"] and "port" in docker["required"]
    assert cluster["properties"]["target"]["const"] == "k8s"
    assert {"namespace", "revisions", "images", "url", "run_id"} <= set(cluster["properties"])
    pipeline = json.loads((SCHEMAS / "pipeline.schema.json").read_text())
    assert len(pipeline["properties"]["deploy"]["anyOf"]) == 2


def test_deploy_returns_the_deployment_record():
    """One record: what deploy/rollback return is what the deploy result (and its schema) hold."""
    from home_mlops.deploy.switch import DeployResult

    assert DeployResult is Deployment


def test_records_are_frozen_and_checked():
    record = resolved()
    with pytest.raises(ValidationError):
        record.run_id = "0" * 32
    for bad in (dict(run_id=RUN.upper()), dict(run_id="$(touch x)"), dict(experiment_id="1a"),
                dict(content_digest="abc"), dict(source="elsewhere")):
        with pytest.raises(ValidationError):
            resolved(**bad)


def test_a_record_survives_its_json_file():
    image = BentoImage(app="hmt-r-a", experiment_id="1", run_id=RUN, model_id=None, image="r/hmt-r-a-bento:t", tag="t",
                       digest=None, image_id="sha256:1", size_bytes=1, build_seconds=0.5, reused=False, pushed=False,
                       role="bento", layers=3, bento_tag="a:t", model_tag="a:t", inputs_digest=None, resolved=resolved())
    data = json.loads(json.dumps(as_result(image)))
    assert BentoImage.model_validate(data) == image
    assert data["resolved"]["input_example"] == [{"a": 1.5}]
    # Unknown keys (a newer home-mlops, the envelope) are ignored when read back.
    assert BentoImage.model_validate({**data, "command": "bento-build", "later_field": 1}) == image


def test_schema_command(tmp_path):
    env = cli_env(tmp_path)
    proc = run_cli(["schema", "deploy"], env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == (SCHEMAS / "deploy.schema.json").read_text()
    proc = run_cli(["schema", "--out", str(tmp_path / "out")], env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name: p.read_text() for p in (tmp_path / "out").iterdir()} == {
        p.name: p.read_text() for p in SCHEMAS.glob("*.json")}
    proc = run_cli(["schema", "[red]nope"], env, timeout=300)
    assert proc.returncode == 2 and "[red]nope" in proc.stderr and "Traceback" not in proc.stderr
