"""Registered models in, provenance out (issue 15), through a real `mlflow server` (sqlite store):
models:/<name>@<alias> and models:/<name>/<version> as RUN_ID, image refs and deploys written back
as tags on the run, its logged model and the registered version, an alias promoted and moved back.

Apps hmt-g-*, ports 18700-18799.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

import deploy_fixtures as fx  # noqa: E402
from conftest import cli_env, run_cli  # noqa: E402
from test_resolve_nas import build_store, flat  # noqa: E402
import test_resolve_tracking  # noqa: E402

server = test_resolve_tracking.server  # a real `mlflow server` (sqlite store) for this module

G_PORTS = range(18700, 18800)
MODEL = "hmt-g-iris"


@pytest.fixture(scope="module")
def registry_store(server, tmp_path_factory):
    """The shared two-experiment store, plus a registered model: version 1 = run3's model,
    version 2 = the *first* (older) model of run_two; alias champion -> 2."""
    from mlflow.tracking import MlflowClient

    url, _ = server
    store = build_store(url, tmp_path_factory.mktemp("g-work"), None, tag="-g")
    client = MlflowClient(url)
    client.create_registered_model(MODEL)
    v1 = client.create_model_version(MODEL, f"models:/{store.model3}", run_id=store.run3, model_id=store.model3)
    v2 = client.create_model_version(MODEL, f"models:/{store.model_first}", run_id=store.run_two,
                                     model_id=store.model_first)
    assert (v1.version, v2.version) == ("1", "2")
    client.set_registered_model_alias(MODEL, "champion", "2")
    return url, store, client


def cli(args: list[str], env: dict, out: Path, timeout: int = 900):
    proc = run_cli([*args, "--json", str(out)], env=env, timeout=timeout)
    data = json.loads(out.read_text()) if out.is_file() else None
    return proc, data


def resolve_ref(env: dict, experiment: str, ref: str, out: Path, *extra: str):
    return cli(["resolve", "--experiment-id", experiment, "--run-id", ref, *extra], env, out)


def tags(client, store, model_id: str, version: str) -> tuple[dict, dict, dict]:
    """home-mlops.* tags of the run, the logged model and the registered version."""
    def ours(found: dict) -> dict:
        return {k: v for k, v in found.items() if k.startswith("home-mlops.")}

    run = client.get_model_version(MODEL, version).run_id
    return (ours(client.get_run(run).data.tags), ours(client.get_logged_model(model_id).tags),
            ours(client.get_model_version(MODEL, version).tags))


@pytest.mark.timeout(900)
def test_resolve_by_alias_and_version(registry_store, state, tmp_path):
    url, store, _ = registry_store
    env = cli_env(state, MLFLOW_TRACKING_URI=url)
    proc, data = resolve_ref(env, store.exp_a, f"models:/{MODEL}@champion", tmp_path / "a.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The version's own logged model, not the run's newest ("second").
    assert data["run_id"] == store.run_two and data["model_id"] == store.model_first
    assert data["registered_model"] == {"uri": f"models:/{MODEL}@champion", "name": MODEL, "version": "2",
                                        "alias": "champion", "run_id": store.run_two, "model_id": store.model_first}
    assert f"[models:/{MODEL}@champion = version 2, run {store.run_two}]" in flat(proc.stderr)

    proc, data = resolve_ref(env, store.exp_a, f"models:/{MODEL}/1", tmp_path / "v.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["run_id"] == store.run3 and data["registered_model"]["version"] == "1"


@pytest.mark.timeout(600)
def test_wrong_experiment_unknown_alias_and_nas_refused(registry_store, state, tmp_path):
    url, store, _ = registry_store
    env = cli_env(state, MLFLOW_TRACKING_URI=url)
    proc, data = resolve_ref(env, store.exp_b, f"models:/{MODEL}@champion", tmp_path / "w.json")
    assert proc.returncode == 2, proc.stderr[-3000:]
    message = flat(data["error"])
    assert f"experiment {store.exp_a}" in message and f"experiment {store.exp_b}" in message
    assert "Traceback" not in proc.stderr

    proc, data = resolve_ref(env, store.exp_a, f"models:/{MODEL}@nobody", tmp_path / "n.json")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr

    proc, data = resolve_ref(env, store.exp_a, f"models:/{MODEL}@champion", tmp_path / "nas.json",
                             "--nas", str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "tracking server" in flat(proc.stderr)


@pytest.mark.parametrize("value", [
    "models:/", "models:/x", "models:/x@", "models:/x/", "models:/x/0", "models:/x/1.5", "models:/x@latest",
    "models:/x@v3", "models:/x@a b", "models:/x@a;rm -rf /", "models:/../x@a", "models:/x@[bold]a[/bold]",
    "models:/x/1/extra", "models:/x@a\nb", "models:/" + "n" * 200 + "@a", "runs:/abc/model", "models:/x@ä",
])
def test_hostile_models_uri_is_exit_2_with_json(value, state, tmp_path):
    env = cli_env(state, MLFLOW_TRACKING_URI="http://127.0.0.1:9")  # never contacted
    proc, data = cli(["resolve", "--experiment-id", "1", "--run-id", value], env, tmp_path / "r.json", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert data is not None and data.get("exit_code", 2) == 2
    assert "Traceback" not in proc.stderr and "127.0.0.1:9" not in proc.stderr


def test_promote_alias_needs_a_registered_version(state, tmp_path):
    env = cli_env(state, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    args = ["deploy", "--app", "hmt-g-x", "--experiment-id", "1", "--run-id", "a" * 32, "--port", "18799",
            "--bento-image", "x/y:1", "--gateway-image", "x/z:1"]
    for extra, expected in ((["--promote-alias", "production"], "needs a registered model version"),
                            (["--promote-alias", "v2"], "not a model registry alias")):
        proc, data = cli([*args, *extra], env, tmp_path / "p.json", timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert expected in flat(proc.stderr)


@pytest.mark.timeout(1500)
def test_build_by_alias_pushes_tags_and_matches_run_id_build(registry_store, local_platform, state, tmp_path):
    """fastapi-build by alias (pushed to the local registry) and by run id (--no-push): the same image ref;
    the push is written back to the run, its logged model and version 2."""
    url, store, client = registry_store
    env = cli_env(state, MLFLOW_TRACKING_URI=url, REGISTRY_USER=local_platform.user,
                  REGISTRY_PASSWORD=local_platform.password)
    app = "hmt-g-build"
    common = ["fastapi-build", "--app", app, "--experiment-id", store.exp_a, "--registry", local_platform.registry]
    proc, by_alias = cli([*common, "--run-id", f"models:/{MODEL}@champion"], env, tmp_path / "alias.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert by_alias["pushed"] and by_alias["run_id"] == store.run_two
    proc, by_run = cli([*common, "--run-id", store.run_two, "--model-name", store.model_first, "--no-push"], env,
                       tmp_path / "run.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert by_run["image"] == by_alias["image"] and "registered_model" not in by_run

    run_tags, model_tags, version_tags = tags(client, store, store.model_first, "2")
    expected = {"home-mlops.image.gateway": by_alias["image"], "home-mlops.digest.gateway": by_alias["digest"]}
    for found in (run_tags, model_tags, version_tags):
        assert expected.items() <= found.items(), found


# the tests that use it are marked docker (conftest.py)
DOCKER_FIXTURES = ("standins",)


@pytest.fixture(scope="module")
def standins():
    from home_mlops.platform.host import docker_client

    try:
        client = docker_client(timeout=10)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Docker not reachable: {exc}")
    return {"bento": fx.build_standin_bento(client, f"{fx.STANDIN_BENTO}:ok"),
            "gateway": fx.build_standin_gateway(client, f"{fx.STANDIN_GATEWAY}:1")}


@pytest.mark.timeout(900)
def test_deploy_by_alias_written_back_promoted_and_rolled_back(registry_store, standins, state, tmp_path):
    url, store, client = registry_store
    app = f"hmt-g-{secrets.token_hex(3)}"
    port = fx.free_test_port(G_PORTS)
    env = cli_env(state, MLFLOW_TRACKING_URI=url, HOME_MLOPS_PLATFORM_DIR=str(tmp_path / "platform"))
    images = ["--bento-image", standins["bento"], "--gateway-image", standins["gateway"]]
    settings = ["--port", str(port), "--memory", "256m", "--cpus", "0.5", "--ready-timeout", "60"]

    def deploy(run_ref: str, name: str, *extra: str):
        proc, data = cli(["deploy", "--app", app, "--experiment-id", store.exp_a, "--run-id", run_ref, *images,
                          *settings, *extra], env, tmp_path / name)
        assert proc.returncode == 0, proc.stderr[-3000:]
        print(proc.stderr[-3000:])  # the write-back lines, shown when an assertion below fails
        return data

    try:
        first = deploy(f"models:/{MODEL}@champion", "d1.json")
        assert first["run_id"] == store.run_two and first["registered_model"]["version"] == "2"
        run_tags, model_tags, version_tags = tags(client, store, store.model_first, "2")
        for found in (run_tags, model_tags, version_tags):
            assert found.get("home-mlops.deploy.url") == first["url"], (run_tags, model_tags, version_tags)
            assert found["home-mlops.deploy.status"] == "deployed"
            assert found["home-mlops.deploy.target"] == "docker" and found["home-mlops.deploy.app"] == app
            assert found["home-mlops.deploy.time"]

        # Version 1 by number, promoting 'champion' to it: the alias now names what is served.
        second = deploy(f"models:/{MODEL}/1", "d2.json", "--promote-alias", "champion")
        assert second["run_id"] == store.run3 and second["previous_run_id"] == store.run_two
        assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
        assert tags(client, store, store.model3, "1")[2]["home-mlops.deploy.status"] == "deployed"

        proc, back = cli(["deploy", "--app", app, "--rollback"], env, tmp_path / "rb.json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert back["run_id"] == store.run_two
        assert client.get_model_version_by_alias(MODEL, "champion").version == "2"  # moved back
        v1_run, v1_model, v1_version = tags(client, store, store.model3, "1")
        for found in (v1_run, v1_model, v1_version):
            assert found["home-mlops.deploy.status"] == f"rolled back to run {store.run_two}"
        assert tags(client, store, store.model_first, "2")[0]["home-mlops.deploy.status"] == "deployed"
    finally:
        proc = run_cli(["undeploy", "--app", app], env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for found in tags(client, store, store.model_first, "2"):
        assert found["home-mlops.deploy.status"] == "undeployed"
