"""The real chain through Groovy: the Jenkinsfile and the library steps run under the
harness in real-shell mode, so `sh` runs the real `home-mlops bento-build`,
`fastapi-build` and `deploy` against a locally trained MLflow run and the local
registry; the chain ends with a working POST /predict on the app's port, then
the undeploy job's step removes it.

The app and its port are this test's own (hmt-j2-chain on 19500, as the job's
environment would set them from jobs/projects.yaml), with its own deploy state
folder: it never replaces a real deployment.
Fixtures `trained_run` and `local_platform` come from tests/conftest.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "docker CLI not found on PATH (apt-get install docker.io)"
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker daemon not reachable: {exc}"
    if proc.returncode != 0:
        return f"docker daemon not reachable: {(proc.stderr or proc.stdout).strip()[:200]}"
    return None


DOCKER_PROBLEM = _docker_problem()
pytestmark = [pytest.mark.docker, pytest.mark.slow,
              pytest.mark.skipif(DOCKER_PROBLEM is not None, reason=DOCKER_PROBLEM or "")]

import runner  # noqa: E402
from runner import VENV_BIN, calls  # noqa: E402

TRAINED_APP = "tabular-iris-multi-classifier"
APP = "hmt-j2-chain"
PORT = 19500
IRIS = [
    {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2},
    {"sepal length (cm)": 6.7, "sepal width (cm)": 3.0, "petal length (cm)": 5.2, "petal width (cm)": 2.3},
]


def _undeploy(tmp_path: Path, env: dict, params: dict) -> dict:
    (record,) = runner.run_harness(
        tmp_path / "harness-undeploy",
        [{"name": "undeploy", "mode": "real", "target": "code", "code": "return undeployApp()",
          "workspace": str(tmp_path / "workspace-undeploy")}],
        timeout=300, params={"APP_NAME": params["APP_NAME"]}, env=env,
    )
    return record


def test_jenkinsfile_chain_ends_with_a_working_predict(tmp_path, trained_run, local_platform):
    import httpx

    run = trained_run(TRAINED_APP)
    env = {k: str(v) for k, v in dict(run.env).items()}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH') or os.environ.get('PATH', '/usr/bin:/bin')}"
    env["MLFLOW_TRACKING_URI"] = run.tracking_uri
    # what the job's EnvInject property sets from jobs/projects.yaml; its own deploy state
    env["HOME_MLOPS_PORT"] = str(PORT)
    # not a timing test: a loaded machine (the suite runs in parallel) may take minutes to start the bento
    env["HOME_MLOPS_READY_TIMEOUT"] = "900"
    env["HOME_MLOPS_PLATFORM_DIR"] = str(tmp_path / "platform")
    params = {
        "APP_NAME": APP,
        "EXPERIMENT_ID": str(run.experiment_id),
        "RUN_ID": str(run.run_id),
        "NAS": "",
        "AR_NAME": local_platform.registry,
    }
    credentials = {"home-mlops-registry": {"user": local_platform.user, "password": local_platform.password}}
    workspace = tmp_path / "workspace"
    try:
        (record,) = runner.run_harness(
            tmp_path / "harness",
            [{"name": "chain", "mode": "real", "target": "jenkinsfile", "workspace": str(workspace)}],
            timeout=1800, params=params, env=env, credentials=credentials,
        )
        _check_chain(record, workspace, run, local_platform, httpx)
    finally:
        undeploy = _undeploy(tmp_path, env, params)
    assert undeploy["result"] == "SUCCESS", (undeploy["failure"], [c.get("stderr") for c in calls(undeploy, "sh")])
    (sh,) = calls(undeploy, "sh")
    assert sh["locks"] == [f"home-mlops-port-{PORT}"]
    result = json.loads((tmp_path / "workspace-undeploy" / "home-mlops-undeploy.json").read_text())
    assert result["ok"] is True and result["removed"], result
    assert undeploy["description"].startswith("undeploy: removed ")
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://127.0.0.1:{PORT}/predict", json={"dataframe_records": IRIS}, timeout=5)


def _check_chain(record: dict, workspace: Path, run, local_platform, httpx) -> None:
    shs = calls(record, "sh")
    logs = "\n".join(f"--- {c['args'][0]['script']} -> {c['status']}\n{c.get('stderr', '')[-3000:]}" for c in shs)
    assert record["result"] == "SUCCESS", f"{record['failure']}\n{logs}"
    assert [c["status"] for c in shs] == [0, 0, 0]
    # resolved once: fastapi-build and deploy start from the previous stage's result file
    assert [c["env"].get("HOME_MLOPS_FROM") for c in shs] == [None, "home-mlops-bento.json", "home-mlops-gateway.json"]
    # the second milestone is passed holding the port lock, right before the deploy
    assert [m["locks"] for m in calls(record, "milestone")] == [[], [f"home-mlops-port-{PORT}"]]
    assert [c["locks"] for c in shs] == [[], [], [f"home-mlops-port-{PORT}"]]
    # the platform registry's host is mapped by default: its credentials are bound, and only as env
    assert [c["args"][0]["credentialsId"] for c in calls(record, "usernamePassword")] == ["home-mlops-registry"] * 3
    assert local_platform.password not in json.dumps([c["args"] for c in record["calls"]])

    bento = json.loads((workspace / "home-mlops-bento.json").read_text())
    gateway = json.loads((workspace / "home-mlops-gateway.json").read_text())
    deploy = json.loads((workspace / "home-mlops-deploy.json").read_text())
    for result, kind in ((bento, "bento"), (gateway, "gateway")):
        assert result["ok"] is True
        assert result["image"].startswith(f"{local_platform.registry}/{APP}-{kind}:")
        assert result["digest"].startswith("sha256:")
        assert result["run_id"] == run.run_id
    # contract 4: the URL names this host (for other machines), local_url is loopback
    assert deploy["ok"] is True and deploy["port"] == PORT
    assert deploy["local_url"] == f"http://127.0.0.1:{PORT}"
    assert deploy["url"].startswith("http://") and deploy["url"].endswith(f":{PORT}")
    assert "127.0.0.1" not in deploy["url"]
    assert record["description"].split("<br>\n") == [
        f"bento: {bento['image']} ({bento['digest']})",
        f"gateway: {gateway['image']} ({gateway['digest']})",
        f"deploy: {deploy['url']} (run {run.run_id})",
    ]
    (archive,) = calls(record, "archiveArtifacts")
    assert archive["files"] == ["home-mlops-bento.json", "home-mlops-deploy.json", "home-mlops-gateway.json"]
    summary = "\n".join(record["log"])
    assert bento["digest"] in summary and gateway["digest"] in summary
    assert f"{deploy['url']}/predict" in summary and f"http://127.0.0.1:{PORT}/predict" in summary

    deadline = time.monotonic() + 60
    while True:
        try:
            resp = httpx.post(f"http://127.0.0.1:{PORT}/predict", json={"dataframe_records": IRIS}, timeout=30)
            if resp.status_code == 200:
                break
        except httpx.HTTPError:
            resp = None
        assert time.monotonic() < deadline, f"/predict did not answer: {resp and resp.text}"
        time.sleep(1)
    predictions = resp.json()["predictions"]
    assert len(predictions) == 2
