"""The real CLI: `k8s render` from a trained run and build results (files valid in strict mode,
byte-identical on a second run), the digest taken from the registry when no result names it,
hostile cluster settings refused with exit 2 before anything is read or written, and
`deploy/status/undeploy --target k8s` without a cluster: exit 7 naming KUBECONFIG."""
from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, cli_env, run_cli
from home_mlops.k8s.render import SCHEMA_VERSION
from k8s_fixtures import fake_digest

APP = "tabular-iris-multi-classifier"
RUN = "0123456789abcdef0123456789abcdef"
REGISTRY = "127.0.0.1:5000/home-mlops"


def render_args(out: Path, *extra: str) -> list[str]:
    return ["k8s", "render", "--app", APP, "--experiment-id", "1", "--run-id", RUN, "--out", str(out), *extra]


HOSTILE = [
    ("HOME_MLOPS_NAMESPACE", "kube-system", "namespace"),
    ("HOME_MLOPS_NAMESPACE", "Models", "namespace"),
    ("HOME_MLOPS_NAMESPACE", "ns; kubectl delete ns default", "namespace"),
    ("HOME_MLOPS_NAMESPACE", "x" * 64, "namespace"),
    ("HOME_MLOPS_INGRESS_HOST", "evil.example/steal", "ingress_host"),
    ("HOME_MLOPS_INGRESS_HOST", "http://iris.home.lan", "ingress_host"),
    ("HOME_MLOPS_INGRESS_HOST", "10.0.0.1", "ingress_host"),
    ("HOME_MLOPS_INGRESS_HOST", "[bold]iris[/bold].lan", "ingress_host"),
    ("HOME_MLOPS_INGRESS_CLASS", "$(id)", "ingress_class"),
    ("HOME_MLOPS_REPLICAS", "1e9", "replicas"),
]


@pytest.mark.parametrize("var, value, field", HOSTILE, ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(HOSTILE)])
def test_hostile_cluster_settings_are_refused_with_exit_2(tmp_path, var, value, field):
    out = tmp_path / "out"
    env = dict(cli_env(tmp_path / "state"), **{var: value})
    proc = run_cli([*render_args(out), "--json", str(tmp_path / "r.json")], env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["ok"] is False and result["exit_code"] == 2 and field in result["error"]
    assert "Traceback" not in proc.stderr and field in proc.stderr
    assert not out.exists()  # nothing rendered, nothing resolved


def test_deploy_status_undeploy_without_a_cluster_is_exit_7_naming_kubeconfig(tmp_path):
    env = dict(cli_env(tmp_path / "state"), KUBECONFIG=str(tmp_path / "missing-kubeconfig"), HOME_MLOPS_TARGET="k8s")
    for args in (["deploy", "--app", APP, "--experiment-id", "1", "--run-id", RUN],
                 ["status"], ["undeploy", "--app", APP], ["deploy", "--rollback", "--app", APP]):
        proc = run_cli([*args, "--json", str(tmp_path / "r.json")], env, timeout=300)
        assert proc.returncode == 7, (args, proc.stderr[-2000:])
        result = json.loads((tmp_path / "r.json").read_text())
        assert "KUBECONFIG" in result["error"] + proc.stderr, args
    # and a namespace no cluster should get is refused before any of that
    proc = run_cli(["undeploy", "--app", APP, "--namespace", "kube-system"], env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def resolved_run(trained_run, tmp_path_factory):
    run = trained_run(APP)
    out = tmp_path_factory.mktemp("resolve") / "resolved.json"
    env = dict(cli_env(run.state), MLFLOW_TRACKING_URI=run.tracking_uri)
    proc = run_cli(["resolve", "--experiment-id", run.experiment_id, "--run-id", run.run_id, "--json", str(out)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, json.loads(out.read_text()), env


def write_results(folder: Path, run, resolved: dict) -> dict[str, str]:
    """Build results as bento-build and fastapi-build write them (image + digest), without building."""
    tag = f"{run.run_id[:12]}-{resolved['content_digest'][:8]}"
    images = {}
    for role, command in (("bento", "bento-build"), ("gateway", "fastapi-build")):
        ref = f"{REGISTRY}/{APP}-{role}:{tag}"
        images[role] = ref
        (folder / f"{role}.json").write_text(json.dumps(
            {"command": command, "ok": True, "app": APP, "image": ref, "digest": fake_digest(ref), "pushed": True}))
    return images


@pytest.mark.slow
def test_render_from_a_trained_run_and_build_results(resolved_run, tmp_path):
    run, resolved, env = resolved_run
    images = write_results(tmp_path, run, resolved)
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        proc = run_cli(["k8s", "render", "--app", APP, "--experiment-id", run.experiment_id, "--run-id", run.run_id,
                        "--out", str(out), "--from", str(tmp_path / "bento.json"), "--from", str(tmp_path / "gateway.json"),
                        "--ingress-host", "iris.home.lan", "--json", str(tmp_path / f"r{i}.json")], env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(out)
    result = json.loads((tmp_path / "r0.json").read_text())
    assert result["images"] == {role: f"{ref}@{fake_digest(ref)}" for role, ref in images.items()}
    files = sorted(outs[0].iterdir())
    assert [p.name for p in files] == result["files"] == sorted(result["files"])
    # the same run twice: byte-identical files
    assert [p.read_bytes() for p in files] == [p.read_bytes() for p in sorted(outs[1].iterdir())]
    for path in files:
        obj = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    # the CLI kubernetes-validate ships agrees (strict, the schema of the same release)
    proc = subprocess.run([str(Path(__import__("sys").executable).parent / "kubernetes-validate"), "--strict",
                           "--kubernetes-version", SCHEMA_VERSION, *map(str, files)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    deployment = yaml.safe_load((outs[0] / [n for n in result["files"] if "deployment" in n and "bento" in n][0]).read_text())
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["io.homemlops.run-id"] == run.run_id
    assert annotations["io.homemlops.model-digest"] == resolved["content_digest"]
    assert "org.opencontainers.image.created" not in annotations  # build time: would break determinism


@pytest.mark.slow
def test_a_result_without_a_digest_or_not_json_is_exit_2(resolved_run, tmp_path):
    run, _, env = resolved_run
    (tmp_path / "nopush.json").write_text(json.dumps({"image": f"{REGISTRY}/{APP}-bento:x", "digest": None}))
    (tmp_path / "junk.json").write_text("{not json")
    for name in ("nopush.json", "junk.json"):
        proc = run_cli(["k8s", "render", "--app", APP, "--experiment-id", run.experiment_id, "--run-id", run.run_id,
                        "--out", str(tmp_path / "out"), "--from", str(tmp_path / name)], env)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert name in proc.stderr


def _tiny_image(ref: str, content: bytes) -> None:
    """A one-file image (docker import of a small tar): a real image in a real registry, in milliseconds."""
    import io
    import tarfile

    import docker

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    repo, tag = ref.rsplit(":", 1)
    docker.from_env().api.import_image_from_data(data.getvalue(), repository=repo, tag=tag)


@contextmanager
def pushed_images(registry: str, app: str, tag: str):
    """The run's bento and gateway image names pushed to the local registry as tiny images:
    yields (role -> reference, role -> digest); the local tags go again afterwards."""
    import docker

    from home_mlops.build.registry import push

    refs = {role: f"{registry}/{app}-{role}:{tag}" for role in ("bento", "gateway")}
    try:
        pushed = {}
        for role, ref in refs.items():
            _tiny_image(ref, f"{role} {app} {tag}".encode())
            pushed[role] = push(ref, {}, force=True)
        yield refs, pushed
    finally:
        client = docker.from_env()
        for ref in refs.values():
            try:
                client.images.remove(ref, force=True)
            except docker.errors.ImageNotFound:
                pass


def run_tag(run, resolved: dict) -> str:
    return f"{run.run_id[:12]}-{resolved['content_digest'][:8]}"


@pytest.mark.docker
@pytest.mark.slow
def test_render_takes_the_digest_from_the_registry(resolved_run, local_platform, tmp_path):
    """No --from: each image's digest is what the (authenticated) registry holds for the tag."""
    run, resolved, env = resolved_run
    app, tag = "hmt-k-render", run_tag(run, resolved)
    with pushed_images(local_platform.registry, app, tag) as (refs, pushed):
        proc = run_cli(["k8s", "render", "--app", app, "--experiment-id", run.experiment_id, "--run-id", run.run_id,
                        "--registry", local_platform.registry, "--out", str(tmp_path / "out"),
                        "--json", str(tmp_path / "r.json")], env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads((tmp_path / "r.json").read_text())
        assert result["images"] == {role: f"{refs[role]}@{pushed[role]}" for role in refs}
        # a tag the registry does not have: exit 3, naming the image
        proc = run_cli(["k8s", "render", "--app", "hmt-k-absent", "--experiment-id", run.experiment_id,
                        "--run-id", run.run_id, "--registry", local_platform.registry,
                        "--out", str(tmp_path / "out2")], env)
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert f"{local_platform.registry}/hmt-k-absent-bento:{tag} is not in the registry" in proc.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_deploy_status_undeploy_through_a_stand_in_api_server(resolved_run, local_platform, tmp_path):
    """The whole `deploy --target k8s` path for real (CLI, MLflow, the registry's digests, the kubernetes
    client over HTTP) with only the API server a stand-in; then status, undeploy, and a failed first deploy."""
    from stub_api import StubApi

    run, resolved, env = resolved_run
    app, namespace = "hmt-k-deploy", "hmt-k-ns"
    with pushed_images(local_platform.registry, app, run_tag(run, resolved)) as (refs, pushed), StubApi(19342) as api:
        env = dict(env, KUBECONFIG=str(api.kubeconfig(tmp_path / "kubeconfig")), HOME_MLOPS_TARGET="k8s",
                   HOME_MLOPS_NAMESPACE=namespace, HOME_MLOPS_PLATFORM_DIR=str(tmp_path / "platform"),
                   REGISTRY_USER=local_platform.user, REGISTRY_PASSWORD=local_platform.password)
        args = ["--app", app, "--experiment-id", run.experiment_id, "--run-id", run.run_id,
                "--registry", local_platform.registry]
        proc = run_cli(["deploy", *args, "--json", str(tmp_path / "deploy.json")], env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        result = json.loads((tmp_path / "deploy.json").read_text())
        assert (result["target"], result["namespace"], result["run_id"]) == ("k8s", namespace, run.run_id)
        # the result is what the published deploy schema promises (its k8s variant: ClusterDeployment)
        jsonschema.validate(result, json.loads((ROOT / "docs" / "schemas" / "deploy.schema.json").read_text()))
        assert result["images"] == {role: f"{refs[role]}@{pushed[role]}" for role in refs}
        assert result["url"] == f"http://{app}-gateway.{namespace}.svc.cluster.local"
        gateway = api.objects[f"/apis/apps/v1/namespaces/{namespace}/deployments/{app}-gateway"]
        assert gateway["spec"]["template"]["spec"]["containers"][0]["image"] == result["images"]["gateway"]
        applies = [r for r in api.requests if r["method"] == "PATCH"]
        assert all(r["query"] == {"fieldManager": "home-mlops", "force": "true"} for r in applies)
        smoke = [r for r in api.requests if "/proxy/" in r["path"]]
        assert smoke[0]["path"].endswith(f"/services/{app}-gateway:http/proxy/readyz")
        if resolved.get("input_example"):
            assert smoke[1]["body"] == {"dataframe_records": resolved["input_example"]}
        proc = run_cli(["status", "--json", str(tmp_path / "status.json")], env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (row,) = json.loads((tmp_path / "status.json").read_text())["deployments"]
        assert (row["app"], row["run_id"], row["ready"]) == (app, run.run_id, True)
        assert app in proc.stderr and "gateway image:" in proc.stderr
        proc = run_cli(["undeploy", "--app", app, "--json", str(tmp_path / "undeploy.json")], env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        removed = json.loads((tmp_path / "undeploy.json").read_text())["removed"]
        assert f"deployment/{app}-gateway" in removed and f"service/{app}-bento" in removed
        assert not [p for p in api.objects if "/deployments/" in p]
        # a first deploy whose smoke test fails: exit 6, and nothing of it stays
        api.proxy_answers["/readyz"] = (503, '{"ready": false}')
        proc = run_cli(["deploy", *args, "--json", str(tmp_path / "failed.json")], env)
        assert proc.returncode == 6, proc.stderr[-3000:]
        failed = json.loads((tmp_path / "failed.json").read_text())
        assert "answered 503" in failed["error"] and "removed" in failed["error"]
        assert not [p for p in api.objects if "/deployments/" in p]
