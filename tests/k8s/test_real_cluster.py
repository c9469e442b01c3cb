"""deploy --target k8s against a real cluster: deploy, smoke, a failing deploy rolled back (exit 6),
deploy --rollback, status, undeploy. Runs when KUBECONFIG points at a reachable cluster and
HOME_MLOPS_TEST_K8S_REGISTRY names a registry its nodes pull from (and this host pushes to);
otherwise it skips saying which is missing. No Kubernetes API server can be had on our machines.
"""
from __future__ import annotations

import json
import os
import uuid

import pytest

from conftest import cli_env, docker_reason, run_cli

APP = "hmt-k-iris"
TRAINED_APP = "tabular-iris-multi-classifier"


def cluster_reason() -> str | None:
    if not os.environ.get("KUBECONFIG"):
        return "needs KUBECONFIG pointing at a reachable Kubernetes cluster (none can be had on this machine)"
    from home_mlops.errors import HomeMlopsError
    from home_mlops.k8s.cluster import connect

    try:
        connect()
    except HomeMlopsError as exc:
        return f"needs a reachable Kubernetes cluster: KUBECONFIG={os.environ['KUBECONFIG']}: {exc.what}"
    if not os.environ.get("HOME_MLOPS_TEST_K8S_REGISTRY"):
        return ("needs HOME_MLOPS_TEST_K8S_REGISTRY: an image registry the cluster's nodes pull from "
                "(and listed in HOME_MLOPS_TRUSTED_REGISTRIES)")
    return docker_reason()


@pytest.fixture(scope="module")
def namespace():
    reason = cluster_reason()
    if reason:
        pytest.skip(reason)
    from kubernetes import client, config

    config.load_kube_config()
    name = f"hmt-k-{uuid.uuid4().hex[:8]}"
    yield name
    client.CoreV1Api().delete_namespace(name)


def run(args: list[str], env: dict, tmp_path, name: str) -> tuple[int, dict]:
    out = tmp_path / f"{name}.json"
    proc = run_cli([*args, "--json", str(out)], env)
    return proc.returncode, json.loads(out.read_text()) if out.exists() else {"stderr": proc.stderr[-3000:]}


@pytest.mark.slow
def test_deploy_smoke_rollback_undeploy_on_a_real_cluster(namespace, trained_run, tmp_path):
    run_ = trained_run(TRAINED_APP)
    env = dict(cli_env(run_.state), APP_NAME=APP, EXPERIMENT_ID=run_.experiment_id, RUN_ID=run_.run_id,
               AR_NAME=os.environ["HOME_MLOPS_TEST_K8S_REGISTRY"], MLFLOW_TRACKING_URI=run_.tracking_uri,
               HOME_MLOPS_TARGET="k8s", HOME_MLOPS_NAMESPACE=namespace)
    for build in ("bento-build", "fastapi-build"):
        code, result = run([build], env, tmp_path, build)
        assert code == 0, result
    code, first = run(["deploy", "--cpus", "0.5"], env, tmp_path, "deploy-1")
    assert code == 0, first
    assert first["target"] == "k8s" and first["namespace"] == namespace
    code, second = run(["deploy", "--cpus", "0.6"], env, tmp_path, "deploy-2")  # a new revision
    assert code == 0, second
    # a release that cannot start (too little memory for the model server): exit 6, revision 2 serves on
    code, failed = run(["deploy", "--memory", "16m", "--ready-timeout", "90"], env, tmp_path, "deploy-bad")
    assert code == 6, failed
    assert "rolled back" in failed["error"]
    code, status = run(["status", "--app", APP], env, tmp_path, "status")
    assert code == 0 and status["deployments"][0]["ready"], status
    assert status["deployments"][0]["roles"]["bento"]["revision"] > second["revisions"][f"{APP}-bento"]
    code, back = run(["deploy", "--rollback", "--app", APP], env, tmp_path, "rollback")
    assert code == 0, back
    code, gone = run(["undeploy", "--app", APP], env, tmp_path, "undeploy")
    assert code == 0 and f"deployment/{APP}-gateway" in gone["removed"], gone
