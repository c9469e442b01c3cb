"""Serving modes through `home-mlops deploy` with real images (issue 16).

One app (``hmt-g2-modes``) on one port goes through every mode: ``bento`` (the
BentoML server is the front door), ``bento+gateway``, ``fastapi`` (the standalone
server), then ``deploy --rollback``. Each deploy passes the health gate and the smoke
test, the mode's front door binds the app's port and answers, the containers of the
earlier mode are gone, and ``status`` shows the mode. The two switches whose API stays
the same (bento+gateway -> fastapi, and the rollback) run under load from fresh
connections: not one request may fail.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import docker_reason, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]
if docker_reason():
    pytest.skip(docker_reason(), allow_module_level=True)

APP = "hmt-g2-modes"
PORT = 19260  # this helper's range (19200-19299)


def cli_json(args: list[str], env: dict, out: Path, expect: int = 0) -> dict:
    proc = run_cli([*args, "--json", str(out)], env, timeout=1200)
    assert proc.returncode == expect, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def modes_env(trained_run, local_platform, tmp_path_factory):
    """The run, its CLI environment (own deploy state) and the images of every mode, built --no-push."""
    import docker

    run = trained_run("tabular-iris-multi-classifier")
    tmp = tmp_path_factory.mktemp("modes")
    env = {**run.env, "AR_NAME": local_platform.registry, "HOME_MLOPS_PLATFORM_DIR": str(tmp / "platform"),
           "HOME_MLOPS_BIND": "127.0.0.1", "HOME_MLOPS_PORT": str(PORT), "HOME_MLOPS_READY_TIMEOUT": "300"}
    # builds share the host's lock and wheel caches (only the deploy state is private)
    build_env = {k: v for k, v in env.items() if k != "HOME_MLOPS_PLATFORM_DIR"}
    ids = ["--app", APP, "--experiment-id", run.experiment_id, "--run-id", run.run_id]
    images = {}
    for command, mode in (("bento-build", "bento"), ("fastapi-build", "bento+gateway"), ("fastapi-build", "fastapi")):
        result = cli_json([command, *ids, "--no-push", "--serving", mode], build_env, tmp / f"{command}-{mode}.json")
        images[result["role"]] = result["image"]
    assert images["server"] == images["bento"].replace(f"{APP}-bento:", f"{APP}-server:")
    yield run, env, ids, images, tmp
    run_cli(["undeploy", "--app", APP], env)
    client = docker.from_env()
    for ref in images.values():
        try:
            client.images.remove(ref, force=True)
        except Exception:  # noqa: BLE001 - another test may still use it
            pass


class Load:
    """Fresh-connection POST /predict in a loop (as a new client each time); every non-200 is a failure."""

    def __init__(self, body: dict):
        self.body, self.ok, self.failures = body, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                resp = httpx.post(f"http://127.0.0.1:{PORT}/predict", json=self.body, timeout=10, trust_env=False)
                if resp.status_code == 200:
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {resp.status_code}: {resp.text[:120]}")
            except httpx.HTTPError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> "Load":
        self.thread.start()
        deadline = time.monotonic() + 30
        while self.ok < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.ok >= 20, f"no load before the switch: {self.failures[:3]}"
        return self

    def __exit__(self, *_exc) -> None:
        time.sleep(1)
        self.stop.set()
        self.thread.join(timeout=15)


def app_containers() -> dict[str, str]:
    import docker

    found = docker.from_env().containers.list(all=True, filters={"label": f"io.homemlops.app={APP}"})
    return {c.name: c.labels.get("io.homemlops.role", "") for c in found}


def check_status(env: dict, tmp: Path, mode: str, front: str, images: dict[str, str]) -> None:
    proc = run_cli(["status", "--app", APP, "--json", str(tmp / "status.json")], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [row] = json.loads((tmp / "status.json").read_text())["deployments"]
    assert (row["serving"], row["front_door"], row["port"], row["ready"]) == (mode, front, PORT, True), row
    roles = {"bento": ("bento",), "bento+gateway": ("bento", "gateway"), "fastapi": ("server",)}[mode]
    for role in ("bento", "gateway", "server"):
        assert (row[f"{role}_image"] == images[role]) if role in roles else row[f"{role}_image"] is None, role
    assert f"serving: {mode} (front door: {front})" in proc.stderr
    assert sorted(app_containers().values()) == sorted(roles)  # nothing of an earlier mode is left


def test_every_mode_deploys_switches_and_rolls_back(modes_env):
    run, env, ids, images, tmp = modes_env
    record = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}

    # 1. bento: BentoML itself binds the app's port (its own API: {"inputs": [...]})
    result = cli_json(["deploy", *ids, "--serving", "bento"], env, tmp / "d1.json")
    assert (result["serving"], result["front_door"], result["gateway_image"]) == ("bento", "bento", "")
    answer = httpx.post(f"http://127.0.0.1:{PORT}/predict", json={"inputs": [record]}, trust_env=False, timeout=30)
    assert answer.status_code == 200 and answer.json() == [0], answer.text
    check_status(env, tmp, "bento", "bento", images)

    # 2. bento+gateway replaces it (the gateway now binds the port)
    result = cli_json(["deploy", *ids, "--serving", "bento+gateway"], env, tmp / "d2.json")
    assert (result["front_door"], result["previous_run_id"]) == ("gateway", run.run_id)
    check_status(env, tmp, "bento+gateway", "gateway", images)

    # 3. fastapi, under load: the standalone server takes the port over without a failed request
    with Load({"dataframe_records": [record]}) as load:
        result = cli_json(["deploy", *ids, "--serving", "fastapi"], env, tmp / "d3.json")
    assert not load.failures, f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    assert result["server_image"] == images["server"] and result["bento_container"] == ""
    answer = httpx.post(f"http://127.0.0.1:{PORT}/predict", json={"dataframe_records": [record]}, trust_env=False)
    assert answer.json() == {"predictions": [0]} and "predict;dur=" in answer.headers["server-timing"]
    check_status(env, tmp, "fastapi", "server", images)

    # 4. rollback: back to the previous deploy (bento+gateway, its own images), under load again
    with Load({"dataframe_records": [record]}) as load:
        result = cli_json(["deploy", "--rollback", "--app", APP], env, tmp / "d4.json")
    assert not load.failures, f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    assert (result["serving"], result["front_door"]) == ("bento+gateway", "gateway")
    check_status(env, tmp, "bento+gateway", "gateway", images)


def test_given_images_must_match_the_mode(modes_env):
    _run, env, ids, images, tmp = modes_env
    result = cli_json(["deploy", *ids, "--serving", "fastapi", "--bento-image", images["bento"]], env,
                      tmp / "bad.json", expect=2)
    assert "serving mode fastapi deploys --server-image" in result["error"]
    assert "missing: --server-image" in result["error"]
