"""--from PATH / HOME_MLOPS_FROM: a later stage starts from an earlier stage's result file.

Hostile and broken files are exit 2 (unit tests of resolve/earlier.py and the real CLI); a file
of another app, experiment or run is exit 2 naming both; with a real MLflow store, the run
comes back from the cache with no tracking server at all (its files hashed again), a damaged
cache entry is fetched again, and a model that changed since the earlier stage is refused. The
real CLI builds a gateway image from a resolve result with the tracking server unreachable.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli_env, copy_store, docker_reason, run_cli
from home_mlops.errors import BadInput, ExitCode
from home_mlops.params import JobParams
from home_mlops.records import Resolved
from home_mlops.resolve import earlier as from_file

RUN = "21d4509ef4af421b9112c1483d557329"
OTHER_RUN = "0123456789abcdef0123456789abcdef"
DEAD_TRACKING = "http://127.0.0.1:19701"  # helper R's port range: nothing listens here
HOSTILE = "$(touch /tmp/hmt-r-canary)[red]"


def resolved_fields(**changes) -> dict:
    fields = dict(experiment_id="7", run_id=RUN, model_id="m-" + "1" * 32, model_name="model",
                  model_uri="models:/m-" + "1" * 32, artifact_uri="file:///x", source="tracking", flavors=["sklearn"],
                  signature=None, input_example=None, python_version="3.11.9", requirements=[],
                  dropped_requirements=[], unpinned_requirements=[], content_digest="cd" * 32,
                  local_path="/nowhere/entry", cache_hit=False)
    return {**fields, **changes}


def build_result(**changes) -> dict:
    result = {"command": "fastapi-build", "ok": True, "app": "hmt-r-app", "experiment_id": "7", "run_id": RUN,
              "image": "r/hmt-r-app-gateway:t", "resolved": resolved_fields()}
    return {**result, **changes}


def write(tmp_path: Path, data, name: str = "earlier.json") -> str:
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def refused(path: str) -> BadInput:
    with pytest.raises(BadInput) as info:
        from_file.load(path)
    assert info.value.code == ExitCode.BAD_INPUT
    assert HOSTILE not in str(info.value)  # the file's values are not echoed
    return info.value


@pytest.mark.parametrize("data, says", [
    ("{not json", "is not JSON"),
    (b"\xff\xfe{}", "is not JSON"),
    ("[" * 100000 + "]" * 100000, "is not JSON"),
    ([build_result()], "holds a JSON list"),
    ({**build_result(), "command": "deploy"}, "holds no resolved run"),
    ({**build_result(), "command": HOSTILE}, "holds no resolved run"),
    ({**build_result(), "ok": False}, "did not succeed"),
    ({**build_result(), "ok": "true"}, "did not succeed"),
    ({k: v for k, v in build_result().items() if k != "resolved"}, "holds no resolved run"),
    (build_result(resolved=resolved_fields(run_id=HOSTILE)), "field resolved.run_id"),
    (build_result(resolved=resolved_fields(content_digest="x")), "field resolved.content_digest"),
    (build_result(resolved=resolved_fields(flavors="sklearn")), "field resolved.flavors"),
    (build_result(resolved={"run_id": RUN}), "field resolved."),
    (build_result(run_id=OTHER_RUN), "field run_id differs"),
    (build_result(app=HOSTILE), "field app is not a valid app name"),
    (build_result(registered_model={"uri": "models:/m@a", "name": "m", "version": "1", "alias": "a",
                                    "run_id": OTHER_RUN, "model_id": None}), "registered_model.run_id differs"),
    ({"command": "resolve", "ok": True, **resolved_fields(experiment_id=HOSTILE)}, "field experiment_id"),
])
def test_broken_or_hostile_files_are_bad_input(tmp_path, data, says):
    assert says in str(refused(write(tmp_path, data)))


def test_missing_and_oversized_files(tmp_path):
    assert "cannot be read" in str(refused(str(tmp_path / "absent.json")))
    assert "cannot be read" in str(refused(str(tmp_path)))  # a folder
    big = tmp_path / "big.json"
    with big.open("wb") as handle:  # sparse: the limit is checked before anything is parsed
        handle.truncate(from_file.MAX_BYTES + 10)
    assert "larger than" in str(refused(str(big)))


def test_a_good_file_fills_the_parameters_not_given_and_checks_those_given(tmp_path):
    found = from_file.load(write(tmp_path, build_result()))
    params = from_file.job_params(found, None, None, None, None, None)
    assert (params.app, params.experiment_id, params.run_id) == ("hmt-r-app", "7", RUN)
    for given, name in ((dict(app="hmt-r-other"), "APP_NAME"), (dict(experiment_id="8"), "EXPERIMENT_ID"),
                        (dict(run_id=OTHER_RUN), "RUN_ID"), (dict(run_id="models:/house@champion"), "RUN_ID"),
                        (dict(nas="/srv/mlruns"), "NAS")):
        args = {"app": None, "experiment_id": None, "run_id": None, "nas": None, "registry": None, **given}
        with pytest.raises(BadInput) as info:
            from_file.job_params(found, **args)
        message = str(info.value)
        assert name in message and "fastapi-build result" in message
        shown = next(iter(given.values()))
        assert (shown in message) or name == "NAS", message  # names both: the given value ...
    # ... and the file's value
    with pytest.raises(BadInput, match=f"RUN_ID {RUN}, but RUN_ID is {OTHER_RUN}"):
        from_file.job_params(found, None, None, OTHER_RUN, None, None)
    with pytest.raises(BadInput, match="--model-name"):
        from_file.check(found, params, "other-model")
    from_file.check(found, params, "m-" + "1" * 32)  # the model's id names it too


def test_a_resolve_result_names_no_app(tmp_path):
    found = from_file.load(write(tmp_path, {"command": "resolve", "ok": True, **resolved_fields()}))
    assert found.app == ""
    with pytest.raises(BadInput, match="APP_NAME"):
        from_file.job_params(found, None, None, None, None, None)
    assert from_file.job_params(found, "hmt-r-any", None, None, None, None).app == "hmt-r-any"


def test_a_registered_version_is_taken_from_the_file(tmp_path):
    registered = {"uri": "models:/house@champion", "name": "house", "version": "3", "alias": "champion",
                  "run_id": RUN, "model_id": None}
    found = from_file.load(write(tmp_path, build_result(registered_model=registered)))
    params = from_file.job_params(found, None, None, None, None, None)
    assert params.run_id == "models:/house@champion"  # as the job gives it
    params, version = from_file.registered_version(found, params, DEAD_TRACKING)  # the registry is not asked
    assert params.run_id == RUN and version.version == "3" and version.tracking_uri == DEAD_TRACKING


def test_local_path_must_be_an_entry_of_this_machines_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME_MLOPS_HOME", str(tmp_path / "state"))
    for local in ("/etc", "relative/entry", str(tmp_path / "state" / "cache" / "models" / ".." / "x"),
                  str(tmp_path / "state" / "cache" / "models" / ".hidden")):
        found = from_file.load(write(tmp_path, build_result(resolved=resolved_fields(local_path=local))))
        with pytest.raises(BadInput, match="not an entry of this machine's model cache"):
            from_file.reopen(found)


# --- with a real MLflow store and cache ------------------------------------------------------


@pytest.fixture
def store(trained_run, state, monkeypatch):
    """A private copy of the shared store (this test damages its cache) and its resolve result file."""
    run = trained_run("tabular-iris-multi-classifier")
    copy_store(run.state, state)
    env = cli_env(state, MLFLOW_TRACKING_URI=run.tracking_uri)
    out = state / "resolve.json"
    proc = run_cli(["resolve", "--experiment-id", run.experiment_id, "--run-id", run.run_id, "--json", str(out)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.setenv("HOME_MLOPS_HOME", str(state))
    return run, env, out


def cli_resolve_run(earlier, run, tracking_uri, model_name=None) -> Resolved:
    from home_mlops.cli.run_options import resolve_run

    params = JobParams.parse(app="hmt-r-from", experiment_id=run.experiment_id, run_id=run.run_id)
    return resolve_run(params, tracking_uri, model_name, None, earlier)


def test_the_run_comes_back_from_the_cache_without_a_tracking_server(store):
    run, _env, out = store
    written = json.loads(out.read_text())
    found = from_file.load(str(out))
    again = cli_resolve_run(found, run, DEAD_TRACKING)  # a tracking server contact would fail (exit 7)
    assert again.cache_hit is True
    assert again.model_dump(exclude={"cache_hit"}) == Resolved.model_validate(written).model_dump(exclude={"cache_hit"})


def test_a_damaged_cache_entry_is_hashed_and_fetched_again(store):
    run, _env, out = store
    found = from_file.load(str(out))
    mlmodel = Path(found.resolved.local_path) / "MLmodel"
    mlmodel.write_text(mlmodel.read_text() + "\n# edited\n")
    again = cli_resolve_run(found, run, run.tracking_uri)
    assert again.cache_hit is False and again.content_digest == found.resolved.content_digest
    assert "# edited" not in mlmodel.read_text()


def test_a_model_that_changed_since_the_earlier_stage_is_refused(store):
    run, _env, out = store
    data = json.loads(out.read_text())
    data["content_digest"] = "0" * 64  # what the earlier stage built from, as far as the file says
    forged = out.with_name("forged.json")
    forged.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="the run's model is now"):
        cli_resolve_run(from_file.load(str(forged)), run, run.tracking_uri)


def test_cli_mismatch_and_hostile_file_are_exit_2(store, tmp_path):
    run, env, out = store
    canary = tmp_path / "canary"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"command": "resolve", "ok": True, **resolved_fields(run_id=f"$(touch {canary})")}))
    for args, says in (
        (["--from", str(out), "--app", "hmt-r-from", "--run-id", OTHER_RUN], f"RUN_ID {run.run_id}, but RUN_ID is {OTHER_RUN}"),
        (["--from", str(bad), "--app", "hmt-r-from"], "field run_id"),
    ):
        result = tmp_path / "result.json"
        proc = run_cli(["fastapi-build", *args, "--no-push", "--json", str(result)],
                       {**env, "MLFLOW_TRACKING_URI": DEAD_TRACKING}, timeout=300)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert says in proc.stderr and "Traceback" not in proc.stderr
        data = json.loads(result.read_text())
        assert data["ok"] is False and data["exit_code"] == 2 and says in data["error"]
    assert not canary.exists()
    # The environment variable the Jenkins steps set works like the option.
    proc = run_cli(["deploy", "--app", "hmt-r-from", "--experiment-id", "999"],
                   {**env, "HOME_MLOPS_FROM": str(out), "MLFLOW_TRACKING_URI": DEAD_TRACKING}, timeout=300)
    assert proc.returncode == 2 and f"EXPERIMENT_ID {run.experiment_id}, but EXPERIMENT_ID is 999" in proc.stderr


@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_fastapi_build_from_a_resolve_result_needs_no_tracking_server(store, tmp_path):
    if docker_reason():
        pytest.skip(docker_reason())
    import docker

    run, env, out = store
    env = {**env, "MLFLOW_TRACKING_URI": DEAD_TRACKING}
    first, second = tmp_path / "gateway.json", tmp_path / "gateway2.json"
    client = docker.from_env()
    made = None
    try:
        proc = run_cli(["fastapi-build", "--app", "hmt-r-from", "--from", str(out), "--no-push", "--json", str(first)], env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        built = json.loads(first.read_text())
        made = built["image"]
        resolved = json.loads(out.read_text())
        assert built["resolved"]["content_digest"] == resolved["content_digest"] and built["resolved"]["cache_hit"]
        assert built["tag"] == f"{run.run_id[:12]}-{resolved['content_digest'][:8]}"
        jsonschema = pytest.importorskip("jsonschema")  # the real results hold to the published schemas
        schemas = Path(__file__).resolve().parents[2] / "docs" / "schemas"
        jsonschema.validate(resolved, json.loads((schemas / "resolve.schema.json").read_text()))
        jsonschema.validate(built, json.loads((schemas / "fastapi-build.schema.json").read_text()))
        # A build result is a start too (the Jenkinsfile hands each stage the previous one's file).
        proc = run_cli(["fastapi-build", "--from", str(first), "--no-push", "--json", str(second)], env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        again = json.loads(second.read_text())
        assert again["image"] == built["image"] and again["reused"] is True and again["app"] == "hmt-r-from"
    finally:
        if made:  # this test's own tag (app hmt-r-from)
            client.images.remove(made, noprune=False)


def test_from_uses_the_description_resolve_kept_and_imports_no_mlflow(store):
    """Describing again reads MLmodel through MLflow (seconds of imports in a new process); --from uses
    the record resolve kept beside the cache for that content, and only for that content."""
    import subprocess
    import sys

    from home_mlops.resolve import described
    from home_mlops.resolve.cache import ModelCache

    run, env, out = store
    found = from_file.load(str(out))
    entry = Path(found.resolved.local_path).name
    assert described.recall(entry, found.resolved.content_digest) == Resolved.model_validate_json(out.read_text())
    assert described.recall(entry, "0" * 64) is None  # kept for other content: not used
    code = ("import sys, home_mlops.cli.app\n"
            "from home_mlops.cli.run_options import resolve_run\n"
            "from home_mlops.params import JobParams\n"
            "from home_mlops.resolve import earlier\n"
            f"e = earlier.load({str(out)!r})\n"
            f"p = JobParams.parse(app='hmt-r-from', experiment_id={run.experiment_id!r}, run_id={run.run_id!r})\n"
            f"r = resolve_run(p, {DEAD_TRACKING!r}, None, None, e)\n"
            "print(r.cache_hit, 'mlflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["True", "False"]
    # A kept description that no longer matches the file's identity is not used: read from the files again.
    memo = ModelCache().root.parent / "described" / f"{entry}.json"
    kept = json.loads(memo.read_text())
    memo.write_text(json.dumps({**kept, "run_id": OTHER_RUN, "signature": {"inputs": "forged"}}))
    again = cli_resolve_run(found, run, DEAD_TRACKING)
    assert again.run_id == run.run_id and again.signature == found.resolved.signature
