"""k8s render: every example app in every serving mode, checked against the Kubernetes schema
(kubernetes-validate, strict: an unknown or misspelt field fails), wired together (selectors,
ports, the gateway's upstream), byte-identical across renders, and a golden copy for one app."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from home_mlops.errors import BadInput
from home_mlops.k8s import kserve
from home_mlops.k8s.render import (
    CONTAINER_PORTS, FRONT_DOOR, FRONT_DOOR_PORT, HEADER, SERVING_ROLES, SCHEMA_VERSION, render, to_yaml, write,
)
from k8s_fixtures import APPS, MODES, release_for, settings_for

GOLDEN = Path(__file__).parent / "golden" / "tabular-iris-xgboost"
UPDATE = os.environ.get("HOME_MLOPS_UPDATE_GOLDEN") == "1"


def by_kind(objects: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj)
    return found


def strict_validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)


@pytest.mark.parametrize("serving", MODES)
@pytest.mark.parametrize("app", APPS)
def test_every_app_and_mode_passes_the_schema_in_strict_mode(app, serving):
    objects = render(release_for(app, serving), settings_for(app, serving, ingress_host=f"{app}.home.lan",
                                                             ingress_class="traefik", image_pull_secret="registry"))
    kinds = by_kind(objects)
    assert sorted(kinds) == sorted(["Namespace", "Service", "Deployment", "PodDisruptionBudget",
                                    "HorizontalPodAutoscaler", "Ingress"])
    for obj in objects:
        strict_validate(obj)
    # one Deployment, Service and PDB per role of the mode (contract: bento / gateway / server)
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert sorted(o["metadata"]["name"] for o in kinds[kind]) == sorted(f"{app}-{r}" for r in SERVING_ROLES[serving])


def test_the_validator_is_strict_enough_to_catch_a_broken_object():
    """Control: the schema check above would catch a misspelt field or a wrong type."""
    deployment = by_kind(render(release_for(APPS[0], "bento+gateway"), settings_for(APPS[0], "bento+gateway")))["Deployment"][0]
    misspelt = yaml.safe_load(to_yaml(deployment))
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": 80}}
    wrong_type = yaml.safe_load(to_yaml(deployment))
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            strict_validate(broken)


@pytest.mark.parametrize("serving", MODES)
def test_objects_are_wired_together(serving):
    app = "tabular-iris-pytorch"  # memory 3g in projects.yaml
    release = release_for(app, serving)
    settings = settings_for(app, serving)
    kinds = by_kind(render(release, settings))
    front = FRONT_DOOR[serving]
    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    for dep in kinds["Deployment"]:
        name, spec = dep["metadata"]["name"], dep["spec"]
        role = name.removeprefix(f"{app}-")
        pod = spec["template"]
        # the selector picks the template's pods, and only by what never changes between releases
        assert spec["selector"]["matchLabels"] == {"io.homemlops.app": app, "io.homemlops.role": role}
        assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert pod["metadata"]["labels"]["io.homemlops.run-id"] == release.run_id
        assert services[name]["spec"]["selector"] == spec["selector"]["matchLabels"]
        container = pod["spec"]["containers"][0]
        image = release.image(role)
        assert container["image"] == f"{image.ref}@{image.digest}"  # by digest
        assert container["ports"] == [{"containerPort": CONTAINER_PORTS[role], "name": "http", "protocol": "TCP"}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert services[name]["spec"]["ports"][0]["targetPort"] == "http"
        assert services[name]["spec"]["ports"][0]["port"] == (FRONT_DOOR_PORT if role == front else CONTAINER_PORTS[role])
        # the image's labels ride along as annotations (all) and labels (those a label value can hold)
        assert pod["metadata"]["annotations"]["io.homemlops.model-uri"] == image.labels["io.homemlops.model-uri"]
        assert dep["metadata"]["annotations"]["io.homemlops.serving"] == serving
        assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        assert spec["progressDeadlineSeconds"] == int(settings.ready_timeout)
        resources = container["resources"]
        assert resources["limits"] == resources["requests"]
        if role == "gateway":
            assert resources["limits"] == {"cpu": "1000m", "memory": "512Mi"}
        else:  # the model holder gets the app's settings: 3g -> 3072Mi
            assert resources["limits"] == {"cpu": "1000m", "memory": "3072Mi"}
        env = {e["name"]: e["value"] for e in container["env"]}
        if role == "server":
            assert env["HOME_MLOPS_GATEWAY_WORKERS"] == "1"  # one per whole CPU of the app (cpus 1)
        if role == "gateway":
            bento = services[f"{app}-bento"]
            assert env["HOME_MLOPS_UPSTREAM_URL"] == f"http://{app}-bento:{bento['spec']['ports'][0]['port']}"
        # the front door's replicas belong to its HPA; the model server's to the settings
        assert ("replicas" in spec) == (role != front)
    hpa = kinds["HorizontalPodAutoscaler"][0]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{app}-{front}"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (settings.replicas, settings.max_replicas)
    assert "Ingress" not in kinds  # no ingress_host, no Ingress


def test_ingress_points_at_the_front_door_and_default_namespace_is_not_rendered():
    app = "tabular-iris-xgboost"
    objects = render(release_for(app, "bento"), settings_for(app, "bento", namespace="default",
                                                             ingress_host="iris.home.lan"))
    kinds = by_kind(objects)
    assert "Namespace" not in kinds  # never re-labelled: it is everyone's
    rule = kinds["Ingress"][0]["spec"]["rules"][0]
    assert rule["host"] == "iris.home.lan"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": f"{app}-bento", "port": {"name": "http"}}
    assert all(o["metadata"].get("namespace") == "default" for o in objects)


def test_same_inputs_give_byte_identical_files(tmp_path):
    app, serving = "tabular-iris-xgboost", "bento+gateway"
    first = write(render(release_for(app, serving), settings_for(app, serving)), tmp_path / "a")
    second = write(render(release_for(app, serving), settings_for(app, serving)), tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in second]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    # and in another interpreter with another hash seed (set and dict order must not leak in)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path;"
            "from k8s_fixtures import release_for, settings_for; from home_mlops.k8s.render import render, write;"
            "write(render(release_for(sys.argv[2], sys.argv[3]), settings_for(sys.argv[2], sys.argv[3])), Path(sys.argv[4]))")
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), app, serving, str(tmp_path / "c")],
                   check=True, env={**os.environ, "PYTHONHASHSEED": "12345"}, timeout=120)
    assert [p.read_bytes() for p in sorted((tmp_path / "c").iterdir())] == [p.read_bytes() for p in first]
    # a different run is a different render (the check above is not vacuous)
    other = render(release_for(app, serving, run_id="f" * 32), settings_for(app, serving))
    assert [to_yaml(o) for o in other] != [p.read_text().removeprefix(HEADER) for p in first]


def test_golden_files_for_one_app(tmp_path):
    app, serving = "tabular-iris-xgboost", "bento+gateway"
    written = write(render(release_for(app, serving), settings_for(app, serving, ingress_host="iris.home.lan")),
                    tmp_path)
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*.yaml"):
            old.unlink()
        for path in written:
            (GOLDEN / path.name).write_bytes(path.read_bytes())
    expected = {p.name: p.read_text() for p in sorted(GOLDEN.glob("*.yaml"))}
    assert expected, f"no golden files in {GOLDEN}: run with HOME_MLOPS_UPDATE_GOLDEN=1"
    assert {p.name: p.read_text() for p in written} == expected


def test_write_replaces_an_earlier_render_but_keeps_other_files(tmp_path):
    app = "tabular-iris-xgboost"
    (tmp_path / "mine.yaml").write_text("kind: ConfigMap\n")
    write(render(release_for(app, "bento+gateway"), settings_for(app, "bento+gateway", ingress_host="a.lan")), tmp_path)
    assert any("gateway" in p.name for p in tmp_path.glob("*.yaml"))
    write(render(release_for(app, "bento"), settings_for(app, "bento")), tmp_path)  # mode changed: no gateway now
    names = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert "mine.yaml" in names
    assert not [n for n in names if "gateway" in n or "ingress" in n], names


def test_an_out_folder_that_cannot_be_written_is_bad_input(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(BadInput, match="cannot write the manifests"):
        write(render(release_for(APPS[0], "bento"), settings_for(APPS[0], "bento")), blocker)


def test_names_kubernetes_cannot_hold_and_missing_digests_are_refused():
    with pytest.raises(BadInput, match="DNS-1035"):
        render(release_for("9lives", "bento"), settings_for("9lives", "bento"))
    long_app = "a" * 56
    with pytest.raises(BadInput, match="at most 55"):
        render(release_for(long_app, "bento+gateway"), settings_for(long_app, "bento+gateway"))
    release = release_for("tabular-iris-xgboost", "bento")
    from dataclasses import replace

    unpinned = replace(release, images=tuple(replace(i, digest="") for i in release.images))
    with pytest.raises(BadInput, match="no registry digest"):
        render(unpinned, settings_for("tabular-iris-xgboost", "bento"))


@pytest.mark.parametrize("serving", MODES)
def test_kserve_inference_service(serving):
    app = "tabular-diabetes-regressor"
    release = release_for(app, serving)
    objects = kserve.render_kserve(release, settings_for(app, serving, canary_traffic_percent=10, replicas=2))
    kinds = by_kind(objects)
    isvc = kinds["InferenceService"][0]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["canaryTrafficPercent"]) == (2, 3, 10)
    container = predictor["containers"][0]
    front = release.image(FRONT_DOOR[serving])
    assert container["name"] == "kserve-container" and container["image"] == front.pinned
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # the predictor's pod part is a core PodSpec: checked against the core schema, strictly
    pod_part = {k: v for k, v in predictor.items() if k not in ("minReplicas", "maxReplicas", "canaryTrafficPercent")}
    strict_validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": pod_part})
    # the front door is KServe's now: no Deployment, Service, HPA of its own; a model server stays plain
    deployments = sorted(o["metadata"]["name"] for o in kinds.get("Deployment", []))
    assert deployments == [f"{app}-{r}" for r in SERVING_ROLES[serving] if r != FRONT_DOOR[serving]]
    assert "HorizontalPodAutoscaler" not in kinds
    for obj in objects:
        if obj["kind"] != "InferenceService":
            strict_validate(obj)
