"""Deploy a release to a Kubernetes cluster, like the Docker target: new version up, checked, or rolled back.

The algorithm of ``deploy``:
  1. Render the release's objects (render.py) and note each role's Deployment as it is now
     (its revision, the run it serves).
  2. Server-side apply the objects, field manager ``home-mlops`` (our fields, taken over from
     anyone else who set them: the manifests are the source of truth): the namespace, then one
     role at a time, model server first,
  3. each time waiting for the role's rollout, printing progress as it changes. A
     Deployment past its progress deadline, a new pod that cannot pull its image or crash-loops,
     or the ready timeout passing is a failed rollout.
  4. Smoke-test the front door through the API server's service proxy: /readyz, then /predict
     with the model's input example when it has one. Anything but 200 fails.
  5. On a failure, every Deployment whose revision the apply moved goes back to the revision it
     had (a JSON patch of its pod template, as `kubectl rollout undo`), and the command exits 6
     naming the cause, with the failing pod's last log lines. An app that had no Deployment before
     is removed again: nothing half-deployed stays behind.
SIGTERM or SIGINT during steps 2-4 (a Jenkins abort) is such a failure: rolled back, exit 6.
Old pods serve until new ones are ready (maxUnavailable 0), so a failed deploy never drops traffic.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes.client import V1Deployment

from home_mlops import console, output
from home_mlops.interrupts import interruptible
from home_mlops.deploy.app_settings import DeploySettings
from home_mlops.errors import DeployFailed, HomeMlopsError, NotFound
from home_mlops.k8s import rollout
from home_mlops.k8s.cluster import Cluster
from home_mlops.k8s.render import (
    FRONT_DOOR, LABEL_APP, LABEL_ROLE, LABEL_SERVING, MANAGED_SELECTOR, READY_PATH, ClusterRelease, object_name,
    render, selector_labels,
)
from home_mlops.records import ClusterDeployment

LOG_LINES = 20


@dataclass
class Clock:
    """How long waits take: real time for the CLI, a stepped clock in tests."""

    interval: float = 2.0
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class _Wait:
    cluster: Cluster
    namespace: str
    timeout: float
    clock: Clock = field(default_factory=Clock)
    # raises a pending interruption between polls (interrupts.Guard.check): a signal that a tolerated
    # API error swallowed must not leave the wait polling until its deadline
    check: Callable[[], None] = lambda: None


def app_selector(app: str) -> str:
    return f"{LABEL_APP}={app},{MANAGED_SELECTOR}"


def role_selector(app: str, role: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(app, role).items())


def _failure_log(wait: _Wait, app: str, role: str, dep: V1Deployment | None) -> list[str]:
    """The last log lines of a new pod of the role (the one that failed), scrubbed."""
    if dep is None:
        return []
    selector = role_selector(app, role)
    pods = rollout.pods_of(rollout.new_replica_set(dep, wait.cluster.replica_sets(wait.namespace, selector)),
                           wait.cluster.pods(wait.namespace, selector))
    for pod in sorted(pods, key=lambda p: p.metadata.name or ""):
        lines = wait.cluster.pod_log(wait.namespace, pod.metadata.name, LOG_LINES)
        if lines:
            return [f"{pod.metadata.name}: {line}" for line in output.clean_lines("\n".join(lines), LOG_LINES)]
    return []


def wait_rollout(wait: _Wait, app: str, role: str) -> rollout.Progress:
    """Poll the role's Deployment until its rollout is done; DeployFailed when it fails or times out."""
    name = object_name(app, role)
    deadline = wait.clock.now() + wait.timeout
    shown = ""
    while True:
        dep = wait.cluster.deployment(wait.namespace, name)
        if dep is None:
            raise DeployFailed(f"deployment {name} is gone from namespace {wait.namespace}",
                               hint="someone removed it while it rolled out: deploy again")
        progress = rollout.rollout_progress(dep)
        if progress.state == rollout.DONE:
            console.ok(progress.message)
            return progress
        failure = progress.message if progress.state == rollout.FAILED else None
        if failure is None:
            selector = role_selector(app, role)
            new = rollout.new_replica_set(dep, wait.cluster.replica_sets(wait.namespace, selector))
            failure = rollout.pod_failure(rollout.pods_of(new, wait.cluster.pods(wait.namespace, selector)))
        if failure is None and wait.clock.now() >= deadline:
            failure = f"{progress.message} after {wait.timeout:g} s (the ready timeout)"
        if failure is not None:
            raise DeployFailed(f"rollout of {name} failed: {failure}",
                               hint="see the pod's log lines below; raise ready_timeout if the model only loads slowly",
                               log_tail=_failure_log(wait, app, role, dep))
        if progress.message != shown:
            console.info(progress.message)
            shown = progress.message
        wait.clock.sleep(wait.clock.interval)
        wait.check()


def smoke_test(cluster: Cluster, namespace: str, release: ClusterRelease) -> None:
    """The front door answers through its Service: /readyz, then one prediction of the input example."""
    service = object_name(release.app, release.front_door)
    checks: list[tuple[str, dict | None]] = [(READY_PATH, None)]
    if release.smoke_payload is not None:
        checks.append(("/predict", release.smoke_payload))
    for path, payload in checks:
        status, body = cluster.proxy(namespace, service, path, payload)
        if status != 200:
            raise DeployFailed(f"smoke test of {service}: {'POST' if payload is not None else 'GET'} {path} "
                               f"answered {status}", "200 through the Service",
                               "see the answer below and the front door's log (kubectl logs)",
                               log_tail=output.clean_lines(body, LOG_LINES))
    console.ok(f"smoke test passed through service {service} ({', '.join(p for p, _ in checks)})")


def _undo(wait: _Wait, release: ClusterRelease, before: dict[str, V1Deployment | None]) -> str:
    """Put every Deployment the apply moved back to the revision it had; remove a first deploy."""
    if all(dep is None for dep in before.values()):
        removed = wait.cluster.delete_app(wait.namespace, app_selector(release.app))
        return f"nothing of {release.app} served before: its new objects were removed ({len(removed)})"
    done = []
    for role in reversed(release.roles):  # the front door first: it goes back before what it calls
        name = object_name(release.app, role)
        now, was = wait.cluster.deployment(wait.namespace, name), before[name]
        if now is None or was is None or rollout.revision(now) == rollout.revision(was):
            continue
        target = rollout.rollback_target(now, wait.cluster.replica_sets(wait.namespace, role_selector(release.app, role)))
        if target is None:
            console.warn(f"{name}: no earlier revision is left to roll back to")
            continue
        failed = rollout.new_replica_set(now, wait.cluster.replica_sets(wait.namespace, role_selector(release.app, role)))
        console.step(f"rolling {name} back to revision {rollout.revision(target)} (run {rollout.run_of(target) or '?'})")
        wait.cluster.patch_deployment(wait.namespace, name, rollout.rollback_patch(target))
        done.append((role, rollout.revision(target), failed))
    for role, _, failed in done:
        try:
            wait_rollout(wait, release.app, role)
        except HomeMlopsError as exc:
            console.warn(f"the rollback of {object_name(release.app, role)} did not finish: {str(exc).splitlines()[0]}")
            continue
        if failed is not None:  # out of the history, so a later `deploy --rollback` never goes back to it
            wait.cluster.delete_replica_set(wait.namespace, failed.metadata.name)
    return ("rolled back " + ", ".join(f"{object_name(release.app, r)} to revision {n}" for r, n, _ in done)
            if done else "nothing had changed")


def _interrupt_fails_the_deploy():
    """SIGTERM / SIGINT (a Jenkins abort) while the new release rolls out fail the deploy, so it is rolled
    back like any failure; once the rollback runs (the guard disarmed) they no longer cut it short."""
    return interruptible(lambda name: DeployFailed(
        f"deploy interrupted by {name}", hint="the previous revision keeps serving; deploy again when ready"))


def deploy(release: ClusterRelease, settings: DeploySettings, cluster: Cluster, *,
           clock: Clock | None = None) -> ClusterDeployment:
    """Apply, wait, smoke-test (module docstring): what serves the app now."""
    started = time.monotonic()
    objects = render(release, settings)
    wait = _Wait(cluster, settings.namespace, settings.ready_timeout, clock or Clock())
    names = {role: object_name(release.app, role) for role in release.roles}
    before = {name: cluster.deployment(settings.namespace, name) for name in names.values()}
    previous_run = rollout.template_run(before[names[release.front_door]])
    console.step(f"applying {len(objects)} objects to namespace {settings.namespace} "
                 f"(server-side apply, field manager home-mlops)")
    with _interrupt_fails_the_deploy() as interrupts:
        wait.check = interrupts.check
        try:
            _roll_out(cluster, release, settings, objects, wait)
            interrupts.check()  # a signal that a tolerated API error swallowed still rolls back
        except Exception as caught:  # noqa: BLE001 - sorted just below
            interrupts.armed = False
            # an interruption that surfaced as another error (a swallowed signal) is still one
            exc = interrupts.error() if interrupts.interrupted_by else caught
            if not isinstance(exc, DeployFailed):
                raise  # not a failed rollout (the API server is unreachable, say): nothing to undo from here
            undone = _undo(wait, release, before)
            raise DeployFailed(f"{exc.what}; {undone}", exc.expected,
                               exc.hint or "fix the cause and deploy again", log_tail=exc.log_tail) from None
    revisions = {name: rollout.revision(cluster.deployment(settings.namespace, name)
                                        or V1Deployment()) for name in names.values()}
    url = front_door_url(release.app, release.front_door, settings)
    console.ok(f"{release.app} run {release.run_id} serves in namespace {settings.namespace}: {url}")
    return ClusterDeployment(
        app=release.app, run_id=release.run_id, experiment_id=release.experiment_id, model_id=release.model_id,
        namespace=settings.namespace, serving=release.serving, url=url, previous_run_id=previous_run,
        images={image.role: image.pinned for image in release.images}, revisions=revisions,
        deploy_seconds=round(time.monotonic() - started, 3))


def _roll_out(cluster: Cluster, release: ClusterRelease, settings: DeploySettings, objects: list[dict],
              wait: _Wait) -> None:
    """Steps 2-4 of the module docstring."""
    # The namespace only when it is missing: an account with rights in the namespace alone can deploy.
    if any(o["kind"] == "Namespace" for o in objects) and not cluster.namespace_exists(settings.namespace):
        cluster.apply(next(o for o in objects if o["kind"] == "Namespace"))
    for role in release.roles:  # one role at a time: a model server that fails leaves the front door alone
        for obj in objects:
            if (obj["metadata"].get("labels") or {}).get(LABEL_ROLE) == role:
                cluster.apply(obj)
        wait_rollout(wait, release.app, role)
    smoke_test(cluster, settings.namespace, release)


def front_door_url(app: str, front_door: str, settings: DeploySettings) -> str:
    """The Ingress host when there is one, else the front door Service's name inside the cluster."""
    if settings.ingress_host:
        return f"http://{settings.ingress_host}"
    return f"http://{object_name(app, front_door)}.{settings.namespace}.svc.cluster.local"


def rollback(app: str, settings: DeploySettings, cluster: Cluster, *, clock: Clock | None = None) -> ClusterDeployment:
    """`deploy --rollback --target k8s`: every Deployment of the app back to its previous revision."""
    wait = _Wait(cluster, settings.namespace, settings.ready_timeout, clock or Clock())
    deps = sorted(cluster.deployments(settings.namespace, app_selector(app)), key=lambda d: d.metadata.name)
    targets = []
    for dep in deps:
        role = (dep.metadata.labels or {}).get(LABEL_ROLE, "")
        target = rollout.rollback_target(dep, cluster.replica_sets(settings.namespace, role_selector(app, role)))
        if target is not None:
            targets.append((dep, role, target))
    if not targets:
        raise NotFound(f"app {app!r} has no previous revision in namespace {settings.namespace}",
                       "a Deployment of the app with an older ReplicaSet (an earlier deploy)",
                       "deploy the run you want with `home-mlops deploy --target k8s`")
    previous_run = rollout.template_run(deps[0]) if deps else ""
    for dep, role, target in targets:
        console.step(f"rolling {dep.metadata.name} back to revision {rollout.revision(target)} "
                     f"(run {rollout.run_of(target) or '?'})")
        cluster.patch_deployment(settings.namespace, dep.metadata.name, rollout.rollback_patch(target))
    roles = [role for _, role, _ in targets]
    for role in roles:
        wait_rollout(wait, app, role)
    run = rollout.run_of(targets[0][2])
    serving = ((deps[0].metadata.annotations or {}).get(LABEL_SERVING, "")) if deps else ""
    front = FRONT_DOOR.get(serving, roles[-1])
    status, _ = cluster.proxy(settings.namespace, object_name(app, front), READY_PATH, None)
    if status != 200:
        raise DeployFailed(f"after the rollback {object_name(app, front)} answers {status} on {READY_PATH}",
                           "200", "look at the pods (kubectl -n <namespace> get pods) and deploy a known good run")
    return ClusterDeployment(
        app=app, run_id=run, namespace=settings.namespace, serving=serving, url=front_door_url(app, front, settings),
        previous_run_id=previous_run,
        revisions={dep.metadata.name: rollout.revision(target) for dep, _, target in targets})


def undeploy(app: str, settings: DeploySettings, cluster: Cluster) -> list[str]:
    """Remove every object of the app home-mlops manages in the namespace (kind/name of each)."""
    return cluster.delete_app(settings.namespace, app_selector(app))
