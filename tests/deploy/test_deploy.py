"""Deploy stage against the real Docker daemon, real containers, real HTTP on loopback.

The images are tiny stand-ins (tests/deploy_fixtures.py) that follow the runtime
contract of the real bento and gateway images; the stand-in bento answers with
the run id it was deployed for, so a test can tell which run served a request.
"""
from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml


import deploy_fixtures as fx  # noqa: E402
from home_mlops.deploy import switch as dp  # noqa: E402
from home_mlops.deploy import specs as ds  # noqa: E402
from home_mlops.deploy import state as deploy_state  # noqa: E402
from home_mlops.errors import ExitCode, HomeMlopsError  # noqa: E402

pytestmark = pytest.mark.docker

RUN_A = "a" * 31 + "1"
RUN_B = "b" * 31 + "2"
RUN_C = "c" * 31 + "3"
EXP = "7"
SMOKE = {"dataframe_records": [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def docker_images():
    try:
        from home_mlops.platform.host import BASE_IMAGE, docker_client

        client = docker_client(timeout=10)
    except HomeMlopsError as exc:
        pytest.skip(f"Docker daemon not reachable: {exc.what} (run `home-mlops platform up`)")
    import docker.errors

    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"base image {BASE_IMAGE} missing (run `home-mlops platform up`)")
    return {**fx.build_standins(client), "client": client}


@pytest.fixture(scope="module")
def real_gateway(docker_images):
    """The real FastAPI gateway (pyhelpers/home_mlops/gateway) for a one-column model; skips if it cannot build."""
    import tempfile

    try:
        from home_mlops.build.gateway_context import render_gateway_context
        from home_mlops.gateway.spec import spec_from_mlmodel
        from home_mlops.platform.host import BASE_IMAGE

        mlmodel = {"signature": {"inputs": json.dumps([{"type": "double", "name": "x", "required": True}])}}
        spec = spec_from_mlmodel(mlmodel, {"columns": ["x"], "data": [[1.0]]}, app="hmt-b-real", experiment_id=EXP)
        with tempfile.TemporaryDirectory(prefix="real-gw-") as tmp:
            ctx = render_gateway_context(Path(tmp) / "ctx", spec, BASE_IMAGE,
                                         Path(tempfile.gettempdir()) / "home-mlops-test-wheels", {}, None)
            tag = "home-mlops-test/real-gateway:1"
            errors = [c["error"] for c in docker_images["client"].api.build(
                path=str(ctx), tag=tag, network_mode="host", rm=True, decode=True) if "error" in c]
    except Exception as exc:  # noqa: BLE001 - the gateway package is another stage's work
        pytest.skip(f"could not build the real gateway image: {type(exc).__name__}: {exc}")
    if errors:
        pytest.skip(f"could not build the real gateway image: {errors[-1]}")
    return tag


@pytest.fixture
def app(docker_images, state_dir):
    name = f"hmt-b-{secrets.token_hex(3)}"
    yield name
    dp.undeploy(name, state_base=state_dir)
    leftovers = docker_images["client"].containers.list(all=True, filters={"label": f"{ds.LABEL_APP}={name}"})
    assert not leftovers, f"containers left behind: {[c.name for c in leftovers]}"


@pytest.fixture
def port():
    return fx.free_test_port()


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "deploy-state"


def _deploy(app, run_id, images, port, state_dir, bento="bento", smoke=SMOKE, timeout=60, bind="0.0.0.0", **kw):
    release = dp.Release(app, EXP, run_id, f"m-{run_id[:6]}", images[bento], images["gateway"], smoke)
    settings = dp.DeploySettings(port=port, bind=bind, ready_timeout=timeout, memory="256m", cpus=0.5)
    return dp.deploy(release, settings, state_base=state_dir, **kw)


def _predict(port: int) -> list:
    import httpx

    with httpx.Client(trust_env=False, timeout=10) as http:
        resp = http.post(f"http://127.0.0.1:{port}/predict", json={"dataframe_records": [{"x": 1.0}, {"x": 2.0}]})
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"]


def _containers(images, app, **labels):
    return dp._app_containers(images["client"], app, **labels)


# --------------------------------------------------------------------------- tests


def test_first_deploy_serves_labels_compose_status(docker_images, app, port, state_dir):
    res = _deploy(app, RUN_A, docker_images, port, state_dir)
    assert res.url == f"http://{socket.gethostname()}:{port}" and res.local_url == f"http://127.0.0.1:{port}"
    assert res.port == port and res.bind == "0.0.0.0" and res.previous_run_id is None and res.run_id == RUN_A

    preds = _predict(port)
    assert [p["run_id"] for p in preds] == [RUN_A, RUN_A]

    gw = docker_images["client"].containers.get(res.gateway_container)
    bento = docker_images["client"].containers.get(res.bento_container)
    for c, role in ((gw, "gateway"), (bento, "bento")):
        assert c.labels[ds.LABEL_APP] == app and c.labels[ds.LABEL_ROLE] == role
        assert c.labels[ds.LABEL_RUN] == RUN_A and c.labels[ds.LABEL_EXPERIMENT] == EXP
        assert c.labels[ds.LABEL_MODEL] == f"m-{RUN_A[:6]}"
        host_config = c.attrs["HostConfig"]
        assert host_config["NetworkMode"] == "host"
        assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
        assert host_config["Memory"] > 0 and host_config["NanoCpus"] > 0
        assert c.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"
    # the settings reach the model server; the gateway keeps its own fixed limits
    assert bento.attrs["HostConfig"]["Memory"] == 256 * 1024**2 and bento.attrs["HostConfig"]["NanoCpus"] == 5 * 10**8
    assert gw.attrs["HostConfig"]["Memory"] == 512 * 1024**2
    assert gw.labels[ds.LABEL_PORT] == str(port) and gw.labels[ds.LABEL_SLOT] == "public"
    assert bento.labels[ds.LABEL_PORT] == str(res.bento_port) and 3000 <= res.bento_port <= 3999
    assert c.name.startswith(f"hm-{app}-bento-{RUN_A[:8]}-")
    # only the pair is left: the candidate gateway is gone
    assert {c.name for c in _containers(docker_images, app)} == {res.gateway_container, res.bento_container}

    compose = yaml.safe_load(Path(res.compose_file).read_text())
    assert Path(res.compose_file) == state_dir / app / "docker-compose.yml"
    assert set(compose["services"]) == {"bento", "gateway"}
    gsvc, bsvc = compose["services"]["gateway"], compose["services"]["bento"]
    assert gsvc["network_mode"] == bsvc["network_mode"] == "host"
    assert gsvc["environment"]["HOME_MLOPS_UPSTREAM_URL"] == f"http://127.0.0.1:{res.bento_port}"
    assert gsvc["environment"]["HOME_MLOPS_GATEWAY_PORT"] == str(port)
    assert gsvc["environment"]["HOME_MLOPS_GATEWAY_HOST"] == "0.0.0.0" and bsvc["environment"]["BENTOML_HOST"] == "127.0.0.1"
    assert bsvc["mem_limit"] == "256m" and bsvc["cpus"] == 0.5 and gsvc["mem_limit"] == "512m"
    assert bsvc["environment"]["BENTOML_PORT"] == str(res.bento_port)
    assert gsvc["labels"][ds.LABEL_RUN] == RUN_A and gsvc["container_name"] == res.gateway_container

    history = json.loads((state_dir / f"{app}.json").read_text())
    assert [h["run_id"] for h in history] == [RUN_A]
    assert {"run_id", "experiment_id", "model_id", "bento_image", "gateway_image", "deployed_at"} <= set(history[0])

    [st] = dp.status(app)
    assert st["run_id"] == RUN_A and st["gateway_container"] == res.gateway_container
    assert st["bento_container"] == res.bento_container and st["bento_image"] == docker_images["bento"]
    assert st["gateway_ready"] and st["bento_ready"] and st["gateway_state"] == "running" and st["ready"]
    assert st["port"] == port and st["url"] == res.url and st["deployed_at"] and st["model_id"] == f"m-{RUN_A[:6]}"
    assert any(s["app"] == app for s in dp.status())


@pytest.mark.parametrize("gateway", ["standin", "real"])
def test_redeploy_under_load_drops_nothing(docker_images, app, port, state_dir, gateway, request):
    if gateway == "real":
        docker_images = {**docker_images, "gateway": request.getfixturevalue("real_gateway")}
    _deploy(app, RUN_A, docker_images, port, state_dir)
    load = fx.LoadLoop(port, fresh=2, keepalive=2, max_seconds=60).start()
    try:
        load.wait_for(100)
        res = _deploy(app, RUN_B, docker_images, port, state_dir)
        time.sleep(0.5)
        mark = time.monotonic()
        load.wait_for(len(load.ok) + len(load.failures) + 100)
    finally:
        load.stop()
    stats = f"{len(load.ok)} ok, {load.stale_retries} stale keep-alive retries, switch {res.switch_seconds} s"
    assert not load.failures, f"{len(load.failures)} failed requests ({stats}), e.g. {load.failures[:5]}"
    assert len(load.ok) > 150, f"too little load to prove anything: {stats}"
    runs_seen = [r for _, r in load.ok]
    assert RUN_A in runs_seen and RUN_B in runs_seen
    after = [r for t, r in load.ok if t >= mark]
    assert after and set(after) == {RUN_B}, "requests after the switch must all be served by the new run"
    assert res.previous_run_id == RUN_A and res.switch_seconds < 15
    assert all(c.attrs["Config"]["Image"] == docker_images["gateway"]
               for c in _containers(docker_images, app, role="gateway"))
    assert [c.labels[ds.LABEL_RUN] for c in _containers(docker_images, app)] == [RUN_B, RUN_B]


@pytest.mark.parametrize("bad_bento,reason", [
    ("bento_fail500", "smoke test"),
    ("bento_crash", "stopped before it was ready"),
    ("bento_never_ready", "was not ready"),
])
def test_failed_deploy_keeps_old_pair(docker_images, app, port, state_dir, bad_bento, reason):
    first = _deploy(app, RUN_A, docker_images, port, state_dir)
    load = fx.LoadLoop(port, fresh=1, keepalive=1, max_seconds=60).start()
    try:
        load.wait_for(20)
        with pytest.raises(HomeMlopsError) as info:
            _deploy(app, RUN_B, docker_images, port, state_dir, bento=bad_bento, timeout=6)
        load.wait_for(len(load.ok) + 20)
    finally:
        load.stop()
    err = info.value
    assert err.code == ExitCode.DEPLOY_FAILED == 6
    assert reason in str(err) and "previous deployment is still serving" in str(err)
    if bad_bento != "bento_never_ready":
        assert "stand-in bento" in str(err), "the failing container's last log lines belong in the message"
    else:
        assert "--ready-timeout" in str(err) and "HOME_MLOPS_READY_TIMEOUT" in str(err)
    assert not load.failures and {r for _, r in load.ok} == {RUN_A}
    assert [p["run_id"] for p in _predict(port)] == [RUN_A, RUN_A]
    names = {c.name for c in _containers(docker_images, app)}
    assert names == {first.gateway_container, first.bento_container}, "no new container may be left behind"
    assert [h["run_id"] for h in deploy_state.read_history(app, state_dir)] == [RUN_A]
    assert dp.status(app)[0]["run_id"] == RUN_A


def test_concurrent_deploy_of_same_app_fails_fast(docker_images, app, port, state_dir):
    outcome = {}

    def slow_deploy():
        try:
            outcome["result"] = _deploy(app, RUN_A, docker_images, port, state_dir, bento="bento_slow")
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=slow_deploy)
    thread.start()
    try:
        lock_file = state_dir / f"{app}.lock"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (lock_file.exists() and lock_file.read_text()):
            time.sleep(0.02)
        t0 = time.monotonic()
        with pytest.raises(HomeMlopsError) as info:
            _deploy(app, RUN_B, docker_images, port, state_dir)
        elapsed = time.monotonic() - t0
    finally:
        thread.join(60)
    assert elapsed < 1.0, f"the second deploy should fail at once, took {elapsed:.2f} s"
    assert info.value.code == ExitCode.DEPLOY_FAILED
    assert "another deploy" in str(info.value) and "in progress" in str(info.value) and RUN_A in str(info.value)
    assert "error" not in outcome, outcome.get("error")
    assert [p["run_id"] for p in _predict(port)] == [RUN_A, RUN_A]


def test_port_taken_by_foreign_process(docker_images, app, port, state_dir):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    try:
        with pytest.raises(HomeMlopsError) as info:
            _deploy(app, RUN_A, docker_images, port, state_dir)
    finally:
        sock.close()
    assert info.value.code == ExitCode.DEPLOY_FAILED
    assert f"port {port}" in str(info.value) and "in use" in str(info.value)
    assert "nothing was started" in str(info.value)
    assert _containers(docker_images, app) == []
    assert deploy_state.read_history(app, state_dir) == []


def test_port_held_by_another_apps_gateway(docker_images, app, port, state_dir):
    other = f"{app}-x"
    try:
        _deploy(other, RUN_C, docker_images, port, state_dir)
        with pytest.raises(HomeMlopsError) as info:
            _deploy(app, RUN_A, docker_images, port, state_dir)
        assert info.value.code == ExitCode.DEPLOY_FAILED and f"app '{other}'" in str(info.value)
        assert RUN_C in str(info.value) and "nothing was started" in str(info.value)
        assert _containers(docker_images, app) == []
    finally:
        dp.undeploy(other, state_base=state_dir)


def test_rollback_returns_to_previous_run(docker_images, app, port, state_dir):
    with pytest.raises(HomeMlopsError) as info:
        dp.rollback(app, state_base=state_dir)
    assert info.value.code == ExitCode.NOT_FOUND

    _deploy(app, RUN_A, docker_images, port, state_dir)
    _deploy(app, RUN_B, docker_images, port, state_dir)
    assert _predict(port)[0]["run_id"] == RUN_B

    res = dp.rollback(app, state_base=state_dir)
    assert res.run_id == RUN_A and res.previous_run_id == RUN_B
    assert [p["run_id"] for p in _predict(port)] == [RUN_A, RUN_A]
    history = deploy_state.read_history(app, state_dir)
    assert [(h["run_id"], bool(h.get("rolled_back_at"))) for h in history] == [(RUN_A, False), (RUN_B, True)]
    assert dp.status(app)[0]["run_id"] == RUN_A
    with pytest.raises(HomeMlopsError) as info:  # nothing before A
        dp.rollback(app, state_base=state_dir)
    assert info.value.code == ExitCode.NOT_FOUND and "no previous deployment" in str(info.value)


def _registry_or_skip():
    import httpx

    from home_mlops.platform.host import REGISTRY_ADDR, registry_credentials

    try:
        httpx.get(f"http://{REGISTRY_ADDR}/v2/", timeout=3)
    except httpx.HTTPError:
        pytest.skip(f"local registry not answering on {REGISTRY_ADDR} (run `home-mlops platform up`)")
    creds = registry_credentials()
    return REGISTRY_ADDR, {"username": creds.user, "password": creds.password}


def test_missing_image_in_registry_is_not_found(docker_images, app, port, state_dir):
    registry, auth = _registry_or_skip()
    missing = f"{registry}/home-mlops-test/{app}-bento:{secrets.token_hex(4)}"
    with pytest.raises(HomeMlopsError) as info:
        dp.deploy(dp.Release(app, EXP, RUN_A, "m-1", missing, docker_images["gateway"], SMOKE),
                  dp.DeploySettings(port=port), registry_auth=auth, state_base=state_dir)
    assert info.value.code == ExitCode.NOT_FOUND == 3
    assert missing in str(info.value) and auth["password"] not in str(info.value)
    assert _containers(docker_images, app) == []
    assert not (state_dir / app / "docker-compose.yml").exists()


def test_image_is_pulled_from_registry_with_auth(docker_images, app, port, state_dir):
    registry, auth = _registry_or_skip()
    client = docker_images["client"]
    ref = f"{registry}/home-mlops-test/standin-bento:ok"
    client.images.get(docker_images["bento"]).tag(ref)
    for line in client.images.push(ref, auth_config=auth, stream=True, decode=True):
        assert "error" not in line, line
    client.images.remove(ref)  # only the tag: the pull must fetch it back through the registry
    try:
        res = dp.deploy(dp.Release(app, EXP, RUN_A, "m-1", ref, docker_images["gateway"], SMOKE),
                        dp.DeploySettings(port=port, ready_timeout=60), registry_auth=auth, state_base=state_dir)
        assert res.bento_image == ref and _predict(port)[0]["run_id"] == RUN_A
        [st] = dp.status(app)
        assert st["bento_image"] == ref and st["bento_digest"].startswith("sha256:")
    finally:
        dp.undeploy(app, state_base=state_dir)
        try:
            client.images.remove(ref)
        except Exception:  # noqa: BLE001
            pass
