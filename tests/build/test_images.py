"""bento-build / fastapi-build / pipeline with the real Docker Engine, registry and BentoML.

Every example app is built and served from its image, and its answers are
compared with the model's own predict on the same input. Two apps also run the
whole pipeline and answer through the gateway.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pandas as pd
import pytest

from conftest import docker_reason, private_platform, run_cli, wait_container_ready

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]
if docker_reason():
    pytest.skip(docker_reason(), allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_json(args: list[str], env: dict, tmp_path: Path, name: str, expect: int = 0) -> dict:
    out = tmp_path / f"{name}.json"
    proc = run_cli([*args, "--json", str(out)], env)
    assert proc.returncode == expect, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    return json.loads(out.read_text())


def own_predictions(local_path: str, records: list[dict]) -> list:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(local_path)
    # Cast like a client that knows the signature (float32 columns for the torch model).
    schema = model.metadata.get_input_schema()
    frame = pd.DataFrame.from_records(records, columns=schema.input_names())
    frame = frame.astype({n: t.to_pandas() for n, t in zip(schema.input_names(), schema.input_types())})
    predicted = model.predict(frame)
    return pd.Series(list(pd.DataFrame(predicted).iloc[:, 0])).tolist() if hasattr(predicted, "shape") else list(predicted)


def assert_close(served: list, expected: list) -> None:
    assert len(served) == len(expected)
    for got, want in zip(served, expected):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def serve_bento(image: str):
    import docker

    client = docker.from_env()
    port = free_port()
    container = client.containers.run(
        image, detach=True, network_mode="host",
        environment={"BENTOML_PORT": str(port), "BENTOML_HOST": "127.0.0.1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_container_ready(f"{url}/readyz", container, seconds=120)
    except AssertionError:
        container.remove(force=True)
        raise
    return container, url


def registry_env(run, platform, **extra) -> dict:
    return {**run.env, "AR_NAME": platform.registry, "REGISTRY_USER": platform.user,
            "REGISTRY_PASSWORD": platform.password, **extra}


@pytest.mark.parametrize("app", [
    "tabular-iris-lightgbm",
    "tabular-iris-xgboost",
    pytest.param("tabular-iris-pytorch", marks=pytest.mark.slow),
])
def test_bento_image_serves_like_the_model(app, trained_run, local_platform, tmp_path):
    run = trained_run(app)
    env = registry_env(run, local_platform)
    result = cli_json(["bento-build", "--app", app, "--experiment-id", run.experiment_id,
                       "--run-id", run.run_id, "--no-push"], env, tmp_path, "bento")
    resolved = cli_json(["resolve", "--experiment-id", run.experiment_id, "--run-id", run.run_id], env, tmp_path, "resolve")
    container, url = serve_bento(result["image"])
    try:
        records = resolved["input_example"]
        answer = httpx.post(f"{url}/predict", json={"inputs": records}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert_close(answer.json(), own_predictions(resolved["local_path"], records))
        bad = httpx.post(f"{url}/predict", json={"inputs": [{"nope": 1}]}, timeout=30)
        assert bad.status_code == 400 and "missing field" in bad.text
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("app", ["tabular-iris-multi-classifier", "tabular-diabetes-regressor"])
def test_pipeline_serves_through_the_gateway(app, trained_run, local_platform, tmp_path):
    from deploy_fixtures import free_test_port

    run = trained_run(app)
    served = f"hmt-b-pipe-{run.run_id[:6]}"  # its own app name and port: never replaces a real deployment
    port = free_test_port()
    env = registry_env(run, local_platform, HOME_MLOPS_PORT=str(port),
                       HOME_MLOPS_PLATFORM_DIR=private_platform(tmp_path / "platform"))
    result = cli_json(["pipeline", "--app", served, "--experiment-id", run.experiment_id, "--run-id", run.run_id],
                      env, tmp_path, "pipeline")
    try:
        assert result["local_url"] == f"http://127.0.0.1:{port}" and result["url"].endswith(f":{port}")
        assert result["deploy"]["bind"] == "0.0.0.0"
        for role in ("bento", "gateway"):
            part = result[role]
            assert part["image"] == f"{local_platform.registry}/{served}-{role}:{part['tag']}"
            assert part["tag"].startswith(run.run_id[:12])
            assert part["digest"].startswith("sha256:") and part["pushed"]
        records = result["resolve"] and json.loads(
            (Path(result["resolve"]["local_path"]) / "input_example.json").read_text())
        records = [dict(zip(records["columns"], row)) for row in records["data"]]
        answer = httpx.post(f"{result['local_url']}/predict", json={"dataframe_records": records}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert_close(answer.json()["predictions"], own_predictions(result["resolve"]["local_path"], records))
        flat = httpx.post(f"{result['local_url']}/predict", json=records[0], timeout=30)
        assert_close(flat.json()["predictions"], own_predictions(result["resolve"]["local_path"], records[:1]))
        # Secrets never reach the result.
        assert local_platform.password not in json.dumps(result)
    finally:
        run_cli(["status", "--app", served], env)
        undone = run_cli(["undeploy", "--app", served], env)
        assert undone.returncode == 0, undone.stderr


def test_labels_push_pull_and_wrong_password(trained_run, local_platform, tmp_path):
    import docker

    app = "tabular-iris-multi-classifier"
    run = trained_run(app)
    env = registry_env(run, local_platform)
    base = ["bento-build", "--app", app, "--experiment-id", run.experiment_id, "--run-id", run.run_id]
    result = cli_json(base, env, tmp_path, "push")
    client = docker.from_env()
    labels = client.images.get(result["image"]).labels
    assert labels["io.homemlops.run-id"] == run.run_id
    assert labels["io.homemlops.experiment-id"] == run.experiment_id
    assert labels["io.homemlops.model-id"] == run.model_id
    assert labels["io.homemlops.model-uri"] == f"models:/{run.model_id}"
    for key in ("created", "revision", "source", "title"):
        assert labels[f"org.opencontainers.image.{key}"]
    assert all(local_platform.password not in v for v in labels.values())
    # Pull the pushed digest back from the registry: the same image.
    repo = result["image"].rsplit(":", 1)[0]
    pulled = client.images.pull(f"{repo}@{result['digest']}", auth_config={
        "username": local_platform.user, "password": local_platform.password})
    assert pulled.id == client.images.get(result["image"]).id
    # Same inputs again: nothing rebuilt, nothing pushed, same digest.
    again = cli_json(base, env, tmp_path, "again")
    assert again["reused"] and again["digest"] == result["digest"]
    # A wrong password fails with exit 5 and is never shown.
    secret = "Wr0ng-Passw0rd-Never-Shown"
    wrong_env = {**env, "REGISTRY_PASSWORD": secret}
    proc = run_cli([*base, "--json", str(tmp_path / "wrong.json")], wrong_env)
    assert proc.returncode == 5, proc.stderr
    assert secret not in proc.stdout + proc.stderr + (tmp_path / "wrong.json").read_text()
    assert "REGISTRY_USER" in proc.stderr


def test_unreachable_registry_and_docker_down(trained_run, local_platform, tmp_path):
    app = "tabular-iris-multi-classifier"
    run = trained_run(app)
    nowhere = f"127.0.0.1:{free_port()}"  # trusted (else exit 2 before any connection), but nothing listens
    env = registry_env(run, local_platform, AR_NAME=f"{nowhere}/nowhere", HOME_MLOPS_TRUSTED_REGISTRIES=nowhere)
    proc = run_cli(["bento-build", "--app", app, "--experiment-id", run.experiment_id, "--run-id", run.run_id], env)
    assert proc.returncode == 5, proc.stderr
    assert "unreachable" in proc.stderr and "Traceback" not in proc.stderr
    down = {**env, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    proc = run_cli(["bento-build", "--app", app, "--experiment-id", run.experiment_id, "--run-id", run.run_id], down)
    assert proc.returncode == 7, proc.stderr
    assert "Docker daemon" in proc.stderr and "Traceback" not in proc.stderr


def test_new_run_changes_only_the_model_layer(trained_run, local_platform, tmp_path):
    import docker

    app = "tabular-iris-multi-classifier"
    # the session's own run of the app (most tests here use it) and one more: one training, not two
    first, second = trained_run(app), trained_run(app, "--C", "2.0")
    assert first.run_id != second.run_id
    images = []
    for run in (first, second):
        result = cli_json(["bento-build", "--app", app, "--experiment-id", run.experiment_id,
                           "--run-id", run.run_id, "--no-push"], registry_env(run, local_platform), tmp_path, run.run_id)
        images.append(docker.from_env().images.get(result["image"]).attrs["RootFS"]["Layers"])
    old, new = images
    assert len(old) == len(new)
    changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    assert changed == [len(new) - 1], f"layers that changed: {changed} of {len(new)}"


def test_bentofile_is_rendered_deterministically(trained_run, tmp_path, monkeypatch):
    from home_mlops.build.bento import render_source
    from home_mlops.resolve.resolver import resolve

    run = trained_run("tabular-iris-multi-classifier")
    monkeypatch.setenv("HOME_MLOPS_HOME", str(run.state))
    resolved = resolve(run.experiment_id, run.run_id, tracking_uri=run.tracking_uri)
    a = render_source(tmp_path / "a", "tabular-iris-multi-classifier", resolved, "base:1", resolved.requirements)
    b = render_source(tmp_path / "b", "tabular-iris-multi-classifier", resolved, "base:1", resolved.requirements)
    import yaml

    bentofile = yaml.safe_load((a.folder / "bentofile.yaml").read_text())
    assert (a.folder / "bentofile.yaml").read_text() == (b.folder / "bentofile.yaml").read_text()
    assert bentofile["models"] == [a.model_tag] and a.model_tag.startswith(f"tabular-iris-multi-classifier:{run.run_id[:12]}")
    assert bentofile["docker"]["python_version"] == "3.11"
    assert bentofile["labels"]["run-id"] == run.run_id
    reqs = (a.folder / "requirements.txt").read_text().splitlines()
    assert all("==" in r for r in reqs) and not any(r.startswith(("pytest", "rich", "torch")) for r in reqs)


def test_bentoml_private_containerfile_api_still_exists():
    """We pin bentoml because the benchmark uses construct_containerfile; an upgrade that
    moves it must fail here, loudly."""
    import inspect

    from bentoml._internal.container import construct_containerfile

    assert "enable_buildkit" in inspect.signature(construct_containerfile).parameters


def test_tag_with_other_content_is_refused_unless_force(trained_run, local_platform, tmp_path):
    import docker

    app = "tabular-iris-multi-classifier"
    run = trained_run(app)
    env = registry_env(run, local_platform, AR_NAME=f"{local_platform.registry}-refuse")
    base = ["bento-build", "--app", app, "--experiment-id", run.experiment_id, "--run-id", run.run_id]
    built = cli_json([*base, "--no-push"], env, tmp_path, "built")
    # Someone else pushed different content under our deterministic tag.
    client = docker.from_env()
    auth = {"username": local_platform.user, "password": local_platform.password}
    client.images.get("home-mlops/python-base:3.11").tag(built["image"].rsplit(":", 1)[0], built["tag"])
    for chunk in client.api.push(built["image"].rsplit(":", 1)[0], tag=built["tag"], auth_config=auth,
                                 stream=True, decode=True):
        assert "error" not in chunk, chunk
    foreign = client.images.get("home-mlops/python-base:3.11").id
    client.images.remove(built["image"])  # drop the foreign tag locally: ours is rebuilt from cache
    refused = cli_json(base, env, tmp_path, "refused", expect=5)
    assert "already exists in the registry with different content" in refused["error"]
    assert "--force" in refused["error"]
    # The refused push left the registry as it was, and our image in place locally.
    assert client.images.get(built["image"]).id != foreign
    forced = cli_json([*base, "--force"], env, tmp_path, "forced")
    assert forced["pushed"] and forced["image_id"] == client.images.get(built["image"]).id
