"""Opt-in (-m jenkins): a real Jenkins runs the real job end to end.

Uses the Jenkins at HOME_MLOPS_JENKINS_URL (+ HOME_MLOPS_JENKINS_USER/TOKEN) when
set; otherwise builds and starts docker/jenkins/ (start.sh), which needs the
base image jenkins/jenkins:<version>-jdk17 present locally. Skips, naming what
is missing, when neither is possible. Then: register the jobs with JJB, trigger
one app's job with `home-mlops jenkins build`, assert SUCCESS and /predict.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "jenkins" / "Dockerfile"
APP = "tabular-iris-multi-classifier"
ENV_NAMES = ("HOME_MLOPS_JENKINS_URL", "HOME_MLOPS_JENKINS_USER", "HOME_MLOPS_JENKINS_TOKEN")


def base_image() -> str:
    version = re.search(r"^ARG JENKINS_VERSION=(\S+)", DOCKERFILE.read_text(), re.M).group(1)
    return f"jenkins/jenkins:{version}-jdk17"


def _how() -> tuple[str | None, str]:
    """('external' | 'docker' | None, reason)."""
    if all(os.environ.get(n) for n in ENV_NAMES):
        return "external", ""
    missing_env = [n for n in ENV_NAMES if not os.environ.get(n)]
    if shutil.which("docker") is None:
        return None, f"no Jenkins: {', '.join(missing_env)} not set, and no docker CLI to build docker/jenkins"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
        present = info.returncode == 0 and subprocess.run(
            ["docker", "image", "inspect", base_image()], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None, f"no Jenkins: {', '.join(missing_env)} not set, and the Docker daemon does not answer"
    if info.returncode != 0:
        return None, f"no Jenkins: {', '.join(missing_env)} not set, and the Docker daemon does not answer"
    if not present:
        return None, (f"no Jenkins: {', '.join(missing_env)} not set, and the image {base_image()} "
                      "is not present locally (docker load it to run docker/jenkins)")
    return "docker", ""


HOW, REASON = _how()
pytestmark = [pytest.mark.jenkins, pytest.mark.docker, pytest.mark.slow,
              pytest.mark.skipif(HOW is None, reason=REASON)]


def home_mlops(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("home-mlops")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_job_builds_and_serves(tmp_path, trained_run, local_platform):
    import httpx

    run = trained_run(APP)
    if not str(run.tracking_uri).startswith("http"):
        pytest.skip(f"trained_run's tracking URI {run.tracking_uri!r} is not an HTTP server a Jenkins agent can reach")
    env = dict(os.environ)
    if HOW == "docker":  # start.sh gets the registry credentials and the tracking URI
        state = tmp_path / "state"
        start_env = dict(os.environ, HOME_MLOPS_HOME=str(state), REGISTRY_USER=local_platform.user,
                         REGISTRY_PASSWORD=local_platform.password, MLFLOW_TRACKING_URI=str(run.tracking_uri))
        proc = subprocess.run(["bash", str(REPO / "docker/jenkins/start.sh")], env=start_env,
                              capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        for line in (state / "jenkins" / "jenkins.env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
    proc = home_mlops("jenkins", "register", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = home_mlops("jenkins", "build", "--app", APP, "--experiment-id", str(run.experiment_id),
                      "--run-id", str(run.run_id), "--registry", local_platform.registry, env=env, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert f"{APP} #" in proc.stderr and "SUCCESS" in proc.stderr
    assert "[Pipeline] stage" in proc.stderr  # the console was followed
    status = home_mlops("jenkins", "status", env=env, timeout=120)
    assert status.returncode == 0 and re.search(rf"^{APP}\s+#\d+\s+SUCCESS", status.stdout, re.M), status.stdout
    deadline = time.monotonic() + 60
    while True:
        try:
            resp = httpx.post("http://127.0.0.1:8000/predict", json={"dataframe_records": [
                {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                 "petal length (cm)": 1.4, "petal width (cm)": 0.2}]}, timeout=30)
            if resp.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "/predict did not answer after the Jenkins build"
        time.sleep(1)
    assert len(resp.json()["predictions"]) == 1
