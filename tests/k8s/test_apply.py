"""apply.py's decisions on the `kubernetes` client's model objects: a rollout that succeeds, one that
is stuck, pods that never get ready, an image that cannot be pulled, a smoke test that fails, each
failure rolled back to the previous revision (exit 6), a failed first deploy removed, and
`deploy --rollback`, status and undeploy. No API server can be had here (see test_real_cluster.py)."""
from __future__ import annotations

import pytest
from kubernetes import client as k8s

from home_mlops.errors import DeployFailed, ExitCode, NotFound
from home_mlops.k8s import apply, rollout
from home_mlops.k8s.render import render
from home_mlops.k8s.status import status_lines, status_rows
from fake_cluster import FakeCluster, model
from k8s_fixtures import release_for, settings_for

APP = "tabular-iris-xgboost"
OLD_RUN, NEW_RUN = "1" * 32, "2" * 32
SMOKE = {"dataframe_records": [{"x": 1.0}]}


class SteppedClock(apply.Clock):
    """Time passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(interval=2.0, now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.t += seconds


def cluster_with_old_release(serving: str, scenario: str, **proxy) -> FakeCluster:
    cluster = FakeCluster(scenario, proxy=proxy or None)
    for obj in render(release_for(APP, serving, run_id=OLD_RUN), settings_for(APP, serving)):
        if obj["kind"] == "Deployment":
            cluster.seed(obj)
    return cluster


def deploy_new(cluster: FakeCluster, serving: str, **settings):
    return apply.deploy(release_for(APP, serving, run_id=NEW_RUN, smoke=SMOKE),
                        settings_for(APP, serving, ready_timeout=60, **settings), cluster, clock=SteppedClock())


def template_run(cluster: FakeCluster, role: str) -> str:
    return rollout.template_run(cluster.deps[f"{APP}-{role}"])


@pytest.mark.parametrize("serving", ["bento+gateway", "bento", "fastapi"])
def test_a_good_rollout_is_applied_waited_for_and_smoke_tested(serving):
    cluster = cluster_with_old_release(serving, "ok")
    result = deploy_new(cluster, serving)
    assert result.run_id == NEW_RUN and result.previous_run_id == OLD_RUN and result.target == "k8s"
    assert all(rev == 2 for rev in result.revisions.values())
    assert not cluster.patches
    front = {"bento+gateway": "gateway", "bento": "bento", "fastapi": "server"}[serving]
    assert cluster.proxied == [(f"{APP}-{front}", "/readyz", None), (f"{APP}-{front}", "/predict", SMOKE)]
    assert result.url == f"http://{APP}-{front}.home-mlops.svc.cluster.local"
    # everything the render has was applied, the model server before the front door
    kinds = [o["kind"] for o in cluster.applied]
    assert "Namespace" not in kinds and "HorizontalPodAutoscaler" in kinds  # the namespace was there already
    names = [o["metadata"]["name"] for o in cluster.applied if o["kind"] == "Deployment"]
    assert names == [f"{APP}-{r}" for r in {"bento+gateway": ("bento", "gateway"), "bento": ("bento",),
                                           "fastapi": ("server",)}[serving]]


@pytest.mark.parametrize("scenario, needle", [
    ("stuck", "ProgressDeadlineExceeded"),
    ("unready", "after 60 s (the ready timeout)"),
    ("pull", "ErrImagePull"),
])
def test_a_failed_rollout_goes_back_to_the_previous_revision(scenario, needle):
    cluster = cluster_with_old_release("bento+gateway", scenario)
    before = {role: cluster.rsets[f"{APP}-{role}"][0] for role in ("bento", "gateway")}
    with pytest.raises(DeployFailed) as caught:
        deploy_new(cluster, "bento+gateway")
    assert caught.value.code == ExitCode.DEPLOY_FAILED
    assert needle in caught.value.what and "rolled back" in caught.value.what
    # the first rollout (the model server) failed: only it had moved, and it goes back to revision 1
    assert [name for name, _ in cluster.patches] == [f"{APP}-bento"]
    (op,) = cluster.patches[0][1]
    expected = k8s.ApiClient().sanitize_for_serialization(before["bento"].spec.template)
    expected["metadata"]["labels"].pop(rollout.TEMPLATE_HASH)
    assert op["value"] == expected
    assert template_run(cluster, "bento") == OLD_RUN
    assert rollout.revision(cluster.deps[f"{APP}-bento"]) == 3  # revision 1's ReplicaSet, renumbered, as Kubernetes does
    assert not cluster.proxied  # no smoke test of a release that never came up
    # the failed revision leaves the history: a later `deploy --rollback` cannot land on it
    assert [rs.metadata.labels["io.homemlops.run-id"] for rs in cluster.rsets[f"{APP}-bento"]] == [OLD_RUN]
    assert any(d.startswith("replicaset/") for d in cluster.deleted)
    # the failing pod's log comes with the error, scrubbed
    assert any("log of" in line for line in caught.value.log_tail)
    assert not any("hunter2" in line for line in caught.value.log_tail)


def test_an_abort_during_the_rollout_is_rolled_back():
    """SIGTERM (Jenkins' abort) while waiting: the same rollback as any failure, exit 6."""
    import os
    import signal

    cluster = cluster_with_old_release("bento+gateway", "unready")
    clock = SteppedClock()
    sent = []

    def sleep_then_abort(seconds: float) -> None:
        clock.t += seconds
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    clock.sleep = sleep_then_abort
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(DeployFailed) as caught:
        apply.deploy(release_for(APP, "bento+gateway", run_id=NEW_RUN), settings_for(APP, "bento+gateway"), cluster,
                     clock=clock)
    assert "interrupted by SIGTERM" in caught.value.what and "rolled back" in caught.value.what
    assert template_run(cluster, "bento") == OLD_RUN
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the handler was put back


def test_an_abort_swallowed_by_a_tolerated_error_is_still_rolled_back():
    """The signal lands inside a call whose failure the wait tolerates (here: a sleep that swallows
    it, as a best-effort API read would): the rollout still ends as an interruption, rolled back."""
    import os
    import signal

    cluster = cluster_with_old_release("bento+gateway", "unready")
    clock = SteppedClock()

    def sleep_swallowing_the_abort(seconds: float) -> None:
        clock.t += seconds
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Exception:  # noqa: BLE001 - what a tolerant probe does
            pass

    clock.sleep = sleep_swallowing_the_abort
    with pytest.raises(DeployFailed) as caught:
        apply.deploy(release_for(APP, "bento+gateway", run_id=NEW_RUN), settings_for(APP, "bento+gateway"), cluster,
                     clock=clock)
    assert "interrupted by SIGTERM" in caught.value.what and "rolled back" in caught.value.what
    assert clock.t == clock.interval  # stopped at the first poll after the signal, not at the ready timeout
    assert template_run(cluster, "bento") == OLD_RUN and template_run(cluster, "gateway") == OLD_RUN


def test_a_failed_smoke_test_rolls_every_role_back():
    cluster = cluster_with_old_release("bento+gateway", "ok", **{"/predict": (502, '{"error_class": "X"}')})
    with pytest.raises(DeployFailed) as caught:
        deploy_new(cluster, "bento+gateway")
    assert "POST /predict answered 502" in caught.value.what
    assert caught.value.log_tail == ['{"error_class": "X"}']
    # the front door goes back first, then the model server, each to the revision it had (1)
    assert [name for name, _ in cluster.patches] == [f"{APP}-gateway", f"{APP}-bento"]
    for role in ("gateway", "bento"):
        assert template_run(cluster, role) == OLD_RUN


def test_a_redeploy_of_the_same_release_moves_nothing_back():
    cluster = FakeCluster("ok", proxy={"/readyz": (503, "not ready")})
    for obj in render(release_for(APP, "bento", run_id=NEW_RUN, smoke=SMOKE), settings_for(APP, "bento", ready_timeout=60)):
        if obj["kind"] == "Deployment":
            cluster.seed(obj)
    with pytest.raises(DeployFailed, match="nothing had changed"):
        deploy_new(cluster, "bento")
    assert not cluster.patches


def test_a_failed_first_deploy_leaves_nothing_behind():
    cluster = FakeCluster("unready")
    with pytest.raises(DeployFailed, match="nothing of .* served before"):
        deploy_new(cluster, "bento+gateway")
    assert cluster.applied[0]["kind"] == "Namespace"  # a new namespace is made first
    assert not cluster.patches
    assert f"deployment/{APP}-bento" in cluster.deleted and not cluster.deps


def test_rollback_target_and_progress_rules():
    def dep(revision: int, **status) -> k8s.V1Deployment:
        return model({"metadata": {"name": "d", "generation": 2, "annotations": {rollout.REVISION: str(revision)}},
                      "spec": {"replicas": 2, "progressDeadlineSeconds": 60, "selector": {"matchLabels": {"a": "b"}},
                               "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}},
                      "status": {"observedGeneration": 2, **status}}, "V1Deployment")

    def rs(revision: int) -> k8s.V1ReplicaSet:
        return model({"metadata": {"name": f"rs{revision}", "annotations": {rollout.REVISION: str(revision)}}},
                     "V1ReplicaSet")

    assert rollout.revision(rollout.rollback_target(dep(5), [rs(1), rs(4), rs(5), rs(3)])) == 4
    assert rollout.rollback_target(dep(1), [rs(1)]) is None
    assert rollout.rollout_progress(dep(1, replicas=2, updatedReplicas=2, availableReplicas=2)).state == rollout.DONE
    assert rollout.rollout_progress(dep(1, replicas=3, updatedReplicas=2, availableReplicas=2)).message.endswith(
        "1 old pods still terminating")
    assert rollout.rollout_progress(dep(1, replicas=2, updatedReplicas=1)).state == rollout.WAITING
    stale = dep(1, replicas=2, updatedReplicas=2, availableReplicas=2)
    stale.status.observed_generation = 1  # the controller has not seen the new spec: not done yet
    assert rollout.rollout_progress(stale).state == rollout.WAITING


def test_deploy_rollback_goes_to_the_previous_run_and_says_so():
    cluster = cluster_with_old_release("bento+gateway", "ok")
    deploy_new(cluster, "bento+gateway")
    result = apply.rollback(APP, settings_for(APP, "bento+gateway"), cluster, clock=SteppedClock())
    assert result.run_id == OLD_RUN and result.previous_run_id == NEW_RUN and result.serving == "bento+gateway"
    assert sorted(name for name, _ in cluster.patches) == [f"{APP}-bento", f"{APP}-gateway"]
    assert cluster.proxied[-1] == (f"{APP}-gateway", "/readyz", None)
    assert template_run(cluster, "gateway") == OLD_RUN


def test_rollback_without_history_is_not_found():
    cluster = FakeCluster("ok")
    for obj in render(release_for(APP, "bento"), settings_for(APP, "bento")):
        if obj["kind"] == "Deployment":
            cluster.seed(obj)
    with pytest.raises(NotFound, match="no previous revision"):
        apply.rollback(APP, settings_for(APP, "bento"), cluster, clock=SteppedClock())


def test_status_and_undeploy():
    cluster = cluster_with_old_release("bento+gateway", "ok")
    deploy_new(cluster, "bento+gateway", ingress_host="iris.home.lan")
    (row,) = status_rows(cluster, "home-mlops")
    assert (row["app"], row["run_id"], row["serving"], row["ready"], row["url"]) == (
        APP, NEW_RUN, "bento+gateway", True, "http://iris.home.lan")
    assert row["roles"]["bento"]["image"].endswith(release_for(APP, "bento+gateway", run_id=NEW_RUN).image("bento").digest)
    lines = status_lines([row])
    assert lines[0].split() == ["app", "url", "namespace", "serving", "run", "model", "id", "ready"]
    assert "    gateway image:" in lines[-1] and "revision 2" in lines[-1]
    removed = apply.undeploy(APP, settings_for(APP, "bento+gateway"), cluster)
    assert f"deployment/{APP}-gateway" in removed and f"ingress/{APP}-gateway" in removed
    assert status_rows(cluster, "home-mlops") == []
