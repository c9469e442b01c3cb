"""cluster.KubeCluster over real HTTP: the `kubernetes` client, loaded from a real kubeconfig, against a
small recording stand-in for the API server on 127.0.0.1. Checks the requests themselves: server-side
apply (PATCH, application/apply-patch+yaml, fieldManager=home-mlops, force), the bearer token, the
rollback's JSON patch, the service-proxy smoke test, undeploy's list-and-delete, and how an
unreachable or refusing API server comes back (exit 7 / exit 6 with the RBAC hint)."""
from __future__ import annotations

import json

import pytest

from home_mlops.errors import DeployFailed, ExitCode, Unavailable
from home_mlops.k8s import cluster as k8s_cluster
from home_mlops.k8s.render import render
from k8s_fixtures import release_for, settings_for
from stub_api import TOKEN, StubApi

PORT = 19341  # helper K's range 19300-19399
CLOSED_PORT = 19349  # nothing in the suite listens here (test_cli_k8s's stand-in API server is on 19342)


@pytest.fixture
def api(tmp_path, monkeypatch):
    with StubApi(PORT) as stub:
        monkeypatch.setenv("KUBECONFIG", str(stub.kubeconfig(tmp_path / "kubeconfig")))
        yield stub


def test_server_side_apply_of_every_rendered_object(api):
    cluster = k8s_cluster.connect()  # asks /version first
    objects = render(release_for("tabular-iris-xgboost", "bento+gateway"),
                     settings_for("tabular-iris-xgboost", "bento+gateway", ingress_host="iris.home.lan"))
    for obj in objects:
        cluster.apply(obj)
    assert api.requests[0]["path"] == "/version" and api.requests[0]["auth"] == f"Bearer {TOKEN}"
    applied = api.requests[1:]
    assert [r["method"] for r in applied] == ["PATCH"] * len(objects)
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in applied)
    assert all(r["content_type"] == "application/apply-patch+yaml" for r in applied)
    assert all(r["query"] == {"fieldManager": "home-mlops", "force": "true"} for r in applied)
    assert [r["body"] for r in applied] == objects
    paths = [r["path"] for r in applied]
    assert paths[0] == "/api/v1/namespaces/home-mlops"
    assert "/apis/apps/v1/namespaces/home-mlops/deployments/tabular-iris-xgboost-gateway" in paths
    assert "/apis/autoscaling/v2/namespaces/home-mlops/horizontalpodautoscalers/tabular-iris-xgboost-gateway" in paths
    assert "/apis/networking.k8s.io/v1/namespaces/home-mlops/ingresses/tabular-iris-xgboost-gateway" in paths


def test_reads_rollback_patch_proxy_and_undeploy(api):
    cluster = k8s_cluster.connect()
    base = "/apis/apps/v1/namespaces/ns1/deployments"
    api.answers[("GET", f"{base}/missing")] = (404, {"kind": "Status", "code": 404, "reason": "NotFound"})
    assert cluster.deployment("ns1", "missing") is None
    api.answers[("GET", f"{base}/d1")] = (200, {
        "metadata": {"name": "d1", "annotations": {"deployment.kubernetes.io/revision": "4"}},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}})
    dep = cluster.deployment("ns1", "d1")
    assert dep.metadata.annotations["deployment.kubernetes.io/revision"] == "4"  # a V1Deployment model
    patch = [{"op": "replace", "path": "/spec/template", "value": {"metadata": {"labels": {"a": "b"}}}}]
    api.answers[("PATCH", f"{base}/d1")] = (200, {"metadata": {"name": "d1"}})
    cluster.patch_deployment("ns1", "d1", patch)
    sent = api.requests[-1]
    assert (sent["method"], sent["content_type"], sent["body"]) == ("PATCH", "application/json-patch+json", patch)
    assert sent["query"] == {"fieldManager": "home-mlops"}
    # the smoke test goes through the API server's service proxy, to the port named http
    proxy = "/api/v1/namespaces/ns1/services/app-gateway:http/proxy/predict"
    api.answers[("POST", proxy)] = (200, '{"predictions": [1]}')
    assert cluster.proxy("ns1", "app-gateway", "/predict", {"inputs": [[1]]}) == (200, '{"predictions": [1]}')
    assert api.requests[-1]["body"] == {"inputs": [[1]]}
    api.answers[("GET", "/api/v1/namespaces/ns1/services/app-gateway:http/proxy/readyz")] = (503, "not ready")
    assert cluster.proxy("ns1", "app-gateway", "/readyz", None)[0] == 503
    # undeploy lists each kind by label and deletes what it finds
    api.answers[("GET", "/apis/apps/v1/namespaces/ns1/deployments")] = (200, {"items": [
        {"metadata": {"name": "app-gateway"}}, {"metadata": {"name": "app-bento"}}]})
    api.answers[("GET", "/api/v1/namespaces/ns1/services")] = (200, {"items": [{"metadata": {"name": "app-gateway"}}]})
    removed = cluster.delete_app("ns1", "io.homemlops.app=app,app.kubernetes.io/managed-by=home-mlops")
    assert removed == ["service/app-gateway", "deployment/app-bento", "deployment/app-gateway"]
    lists = [r for r in api.requests if r["method"] == "GET" and r["query"].get("labelSelector")]
    assert {r["query"]["labelSelector"] for r in lists} == {"io.homemlops.app=app,app.kubernetes.io/managed-by=home-mlops"}
    deletes = [r for r in api.requests if r["method"] == "DELETE"]
    assert [r["path"].rsplit("/", 1)[1] for r in deletes] == ["app-gateway", "app-bento", "app-gateway"]
    assert all(r["body"] == {"propagationPolicy": "Background"} for r in deletes)


def test_a_refusing_api_server_is_exit_6_with_the_rbac_hint(api):
    cluster = k8s_cluster.connect()
    path = "/apis/apps/v1/namespaces/ns1/deployments/d1"
    api.answers[("PATCH", path)] = (403, {"kind": "Status", "message": "deployments.apps is forbidden", "code": 403})
    with pytest.raises(DeployFailed) as caught:
        cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d1", "namespace": "ns1"}})
    assert caught.value.code == ExitCode.DEPLOY_FAILED
    assert "403" in caught.value.what and "RBAC" in caught.value.hint


def test_no_api_server_is_exit_7(tmp_path, monkeypatch):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{CLOSED_PORT}"}}],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    with pytest.raises(Unavailable) as caught:
        k8s_cluster.connect()
    assert caught.value.code == ExitCode.UNAVAILABLE and f"127.0.0.1:{CLOSED_PORT}" in caught.value.expected
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(Unavailable, match="no Kubernetes cluster is configured"):
        k8s_cluster.connect()
