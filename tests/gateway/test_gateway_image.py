"""The gateway image as built (``fastapi-build``) serves every protocol, its docs offline, and Server-Timing.

Real parts: a trained example model, ``home-mlops fastapi-build --no-push`` with the real
Docker Engine (the image installs its wheels without network), the container run on a
loopback port of this file's range, in front of the /predict tests' stand-in model
server (a real HTTP server on the host). It would fail if a module of the gateway
package, orjson or the docs assets were missing from the image.
"""
from __future__ import annotations

import json
import re
import secrets

import httpx
import pytest

from conftest import docker_reason, run_cli, wait_container_ready
from deploy_fixtures import free_test_port
from test_gateway_app import Upstream

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]
if docker_reason():
    pytest.skip(docker_reason(), allow_module_level=True)

APP = "tabular-iris-multi-classifier"
PORTS = range(19130, 19150)  # helper G1's range


@pytest.fixture(scope="module")
def gateway_url(trained_run, local_platform, tmp_path_factory):
    import docker

    run = trained_run(APP)
    name = f"hmt-g1-img-{secrets.token_hex(3)}"
    tmp = tmp_path_factory.mktemp("g1-image")
    env = {**run.env, "AR_NAME": local_platform.registry}
    out = tmp / "gateway.json"
    proc = run_cli(["fastapi-build", "--app", name, "--experiment-id", run.experiment_id, "--run-id", run.run_id,
                    "--no-push", "--json", str(out)], env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    image = json.loads(out.read_text())["image"]
    client = docker.from_env()
    port = free_test_port(PORTS)
    with Upstream() as upstream:
        container = client.containers.run(
            image, name=name, detach=True, network_mode="host",
            environment={"HOME_MLOPS_GATEWAY_HOST": "127.0.0.1", "HOME_MLOPS_GATEWAY_PORT": str(port),
                         "HOME_MLOPS_UPSTREAM_URL": upstream.url})
        try:
            wait_container_ready(f"http://127.0.0.1:{port}/readyz", container, seconds=120)
            yield f"http://127.0.0.1:{port}", name
        finally:
            container.remove(force=True)
            client.images.remove(image, force=True)


def test_every_protocol_answers_from_the_image(gateway_url):
    url, name = gateway_url
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        meta = client.get(f"/v2/models/{name}").json()
        columns = [i["name"] for i in meta["inputs"]]
        assert columns and all(i["datatype"] == "FP64" for i in meta["inputs"])
        rows = [[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]]
        predicted = client.post("/predict", json={"dataframe_split": {"columns": columns, "data": rows}})
        assert predicted.status_code == 200, predicted.text
        csv = ",".join(columns) + "\n" + "\n".join(",".join(map(str, r)) for r in rows)
        invoked = client.post("/invocations", content=csv.encode(), headers={"content-type": "text/csv"})
        infer = client.post(f"/v2/models/{name}/infer", json={"inputs": [
            {"name": c, "shape": [2], "datatype": "FP64", "data": [r[i] for r in rows]} for i, c in enumerate(columns)]})
        assert invoked.json() == predicted.json() == {"predictions": [10.0, 2.0]}  # the stand-in sums each row
        assert infer.json()["outputs"][0]["data"] == [10.0, 2.0]
        stages = re.findall(r"(\w+);dur=", predicted.headers["server-timing"])
        assert stages == ["parse", "validate", "queue", "predict", "serialize"]
        assert "gateway_stage_duration_seconds_bucket" in client.get("/metrics").text


def test_docs_load_every_asset_from_the_image(gateway_url):
    url, _ = gateway_url
    with httpx.Client(base_url=url, trust_env=False, timeout=30) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), html
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets
            for asset in assets:
                resp = client.get(asset)
                assert resp.status_code == 200 and len(resp.content) > 1000, asset
