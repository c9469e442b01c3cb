"""Runs tests/groovy/harness.groovy from pytest and returns its records."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "tests" / "groovy" / "harness.groovy"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
VENV_BIN = REPO / ".venv" / "bin"

APP = "tabular-iris-xgboost"
RUN_ID = "0123456789abcdef0123456789abcdef"
PARAMS = {
    "APP_NAME": APP,
    "EXPERIMENT_ID": "1",
    "RUN_ID": RUN_ID,
    "NAS": "",
    "AR_NAME": "127.0.0.1:5000/home-mlops",
}
SECRET = "s3cr3t-Pa55w0rd-do-not-log-7f3a"
CREDENTIALS = {"home-mlops-registry": {"user": "ci-user", "password": SECRET}}
DEPLOY_HOST = "buildhost.home.example"  # what a deploy result's url names (contract 4), never contacted


def groovy_env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("JAVA_HOME") and Path(JAVA_HOME).is_dir():
        env["JAVA_HOME"] = JAVA_HOME
    # Each harness is a JVM that lives a few seconds: the C2 compiler and the parallel collector's
    # threads only cost CPU there (a third less CPU for test_groovy_steps with these, on 2 cores).
    env.setdefault("JAVA_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    return env


def require_groovy() -> str:
    """The groovy binary; skips (fails under CI=true) when it is missing."""
    groovy = shutil.which("groovy")
    reason = None
    if groovy is None:
        reason = "groovy is not installed (apt-get install groovy openjdk-17-jre-headless)"
    elif not groovy_env().get("JAVA_HOME"):
        reason = f"no JAVA_HOME and no {JAVA_HOME} (apt-get install openjdk-17-jre-headless)"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return groovy


def run_harness(tmp_path: Path, runs: list[dict[str, Any]], timeout: float = 300, **common: Any) -> list[dict]:
    """Runs the harness once (one JVM) for all runs; returns one record per run, in order."""
    groovy = require_groovy()
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, run in enumerate(runs):
        run.setdefault("workspace", str(tmp_path / f"ws-{i}"))
    config = {"repo": str(REPO), "output": str(tmp_path / "harness-out.json"), "runs": runs}
    config.setdefault("params", dict(PARAMS))
    config.setdefault("credentials", CREDENTIALS)
    config.update(common)
    config_path = tmp_path / "harness-config.json"
    config_path.write_text(json.dumps(config))
    proc = subprocess.run(
        [groovy, str(HARNESS), str(config_path)],
        env=groovy_env(), capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"harness crashed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads((tmp_path / "harness-out.json").read_text())["runs"]


def calls(record: dict, step: str) -> list[dict]:
    return [c for c in record["calls"] if c["step"] == step]


def sh_scripts(record: dict) -> list[str]:
    return [c["args"][0]["script"] for c in calls(record, "sh")]


def ok_rules(app: str = APP) -> list[dict]:
    """sh rules for record mode: each CLI command succeeds with a plausible result."""
    reg = "127.0.0.1:5000/home-mlops"
    return [
        {"match": " bento-build ", "status": 0, "json": {
            "command": "bento-build", "ok": True, "app": app, "run_id": RUN_ID,
            "image": f"{reg}/{app}-bento:r-0123456789ab", "digest": "sha256:" + "b" * 64, "pushed": True}},
        {"match": " fastapi-build ", "status": 0, "json": {
            "command": "fastapi-build", "ok": True, "app": app, "run_id": RUN_ID,
            "image": f"{reg}/{app}-gateway:r-0123456789ab", "digest": "sha256:" + "g" * 64, "pushed": True}},
        {"match": " deploy ", "status": 0, "json": {
            "command": "deploy", "ok": True, "app": app, "run_id": RUN_ID, "url": f"http://{DEPLOY_HOST}:8000",
            "local_url": "http://127.0.0.1:8000", "port": 8000, "bind": "0.0.0.0",
            "bento_image": f"{reg}/{app}-bento:r-0123456789ab",
            "gateway_image": f"{reg}/{app}-gateway:r-0123456789ab", "previous_run_id": None}},
    ]
