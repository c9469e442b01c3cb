"""Deploy one app's release in its serving mode with no dropped requests.

The serving mode (``specs.SERVING_ROLES``) decides the containers: ``bento+gateway`` a
BentoML model server behind a FastAPI gateway, ``bento`` the BentoML server alone,
``fastapi`` the standalone FastAPI model server. Its *front door* (gateway, bento or
server) is the container that binds the app's public port; every front door listens with
SO_REUSEPORT (the bento through ``bento_serve.py``), so each mode switches the same way.

Many apps share one host, each on its own public port. All containers use host
networking; everything but the public front door binds 127.0.0.1; the public front
door binds the deploy's ``bind`` address (default 0.0.0.0). The switch-over, in order:

1. lock the app (a second deploy, rollback or undeploy of the same app fails at once);
2. make sure the mode's images are present locally (else pull them; a missing image is
   NotFound and nothing was touched);
3. check the public port: free, or held by this app's own public front door; a port
   another app holds is exit 6 naming that app and its run, before anything starts;
4. (bento+gateway) start the new bento on a free loopback port in 3000-3999 and wait
   for ``/readyz``;
5. start a *candidate* front door on another such port (in front of that bento), wait
   for ``/readyz`` and smoke-test ``POST /predict`` with the model's input example;
6. under the host-wide deploy lock (every app, every user): check the public port
   again, start the new *public* front door next to the old one (SO_REUSEPORT: for a
   moment both accept); once the new one answers (with its deploy id, or its health
   check for a bento) and a burst of fresh connections succeeds, the old front door gets
   SIGTERM (it stops accepting, its queued connections migrate to the twin -
   net.ipv4.tcp_migrate_req=1 - and it drains in-flight requests); then every other
   container of the app's earlier deploys is stopped (a mode change included);
7. record the deployment in the app's history and write its docker-compose.yml.

Port picks (4, 5) also happen under the host lock, until the container that claims
the port (by its label) exists, so concurrent deploys never pick the same port.

A failure before step 6 completes - including SIGTERM or SIGINT, e.g. a Jenkins
abort - removes only the new containers: the old pair never stopped serving
(exit code 6, DeployFailed, with the failing container's last log lines).
"""
from __future__ import annotations

import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from home_mlops import console
from home_mlops.interrupts import Guard, interruptible
from home_mlops.error_kinds import Kind, classify
from home_mlops.deploy import docker_host, state
from home_mlops.deploy.app_settings import SERVING_ROLES, DeploySettings
from home_mlops.deploy.docker_host import DockerHost, as_host
from home_mlops.deploy.ports import check_public_port, free_port, pick_private_port
from home_mlops.deploy.probe import KEEP_SERVING, scrub, sends_deploy_id, smoke, verify_public, wait_ready
from home_mlops.deploy.specs import (
    LABEL_APP, LABEL_BIND, LABEL_DEPLOY_ID, LABEL_PORT, LABEL_PREFIX, LABEL_ROLE, LABEL_RUN, LOOPBACK,
    SPECS, STOP_TIMEOUT, Release, Slot, bento_spec, compose_services, front_door, public_url,
)
from home_mlops.deploy.status import status
from home_mlops.records import Deployment
from home_mlops.errors import BadInput, DeployFailed, HomeMlopsError, NotFound, Unavailable
from home_mlops.params import validate_app
from home_mlops.platform.host import enable_reuseport_migration
from home_mlops.build.registry import auth_for
from home_mlops.build.trust import require_trusted

# Names other modules and the tests use from here.
__all__ = ["DeployResult", "DeployInterrupted", "Release", "DeploySettings", "deploy", "rollback", "status",
           "undeploy", "ensure_image", "public_url", "free_port"]


class DeployInterrupted(DeployFailed):
    """SIGTERM/SIGINT during a deploy: the new containers were removed, the old pair serves."""


# What deploy and rollback return: the Deployment record (records.py), the deploy result's fields.
DeployResult = Deployment


@dataclass
class _Started:
    """What a deploy started (removed again if it fails before the switch)."""

    containers: list[Any] = field(default_factory=list)


# --------------------------------------------------------------------------- images


_REFUSED_LOGIN = ("unauthorized", "no basic auth", "authentication required")


def ensure_image(host: DockerHost, ref: str, registry_auth: dict | None) -> str:
    """The local image id of ``ref``; pulled from its registry when it is not here
    (``host``: a DockerHost, or a docker SDK client, which is wrapped)."""
    import docker.errors
    from docker.utils import parse_repository_tag

    host = as_host(host)
    try:
        return host.image_id(ref)
    except docker.errors.ImageNotFound:
        pass
    repo, tag = parse_repository_tag(ref)
    require_trusted(ref)  # also when the caller brought credentials: no pull from a host not on the list
    auth = registry_auth if registry_auth is not None else auth_for(ref)
    console.step(f"pulling {ref}")
    try:
        image_id = host.pull(repo, tag or "latest", auth)
        console.ok(f"pulled {ref}")
        return image_id
    except docker.errors.APIError as exc:
        text = scrub(str(exc.explanation or exc), [(auth or {}).get("password", "")])
        if classify(exc) is Kind.NOT_FOUND:  # the daemon passes the registry's 404 on (manifest/name unknown)
            raise NotFound(
                f"image {ref} is neither on this host nor in its registry",
                "an image built and pushed by `home-mlops bento-build` / `fastapi-build` for this run",
                "run the build steps for this run first (or check AR_NAME and the run id)",
            ) from None
        # A refused login reaches us as HTTP 500 from the daemon (seen: "no basic auth credentials",
        # "unauthorized: authentication required"): its registry error text is the only sign there is.
        if any(sign in text.lower() for sign in _REFUSED_LOGIN):
            raise Unavailable(
                f"the registry refused the credentials while pulling {ref}",
                "valid REGISTRY_USER / REGISTRY_PASSWORD (or a docker login) for the registry",
                "check the credentials given to the job",
            ) from None
        raise Unavailable(
            f"pulling {ref} failed: {text[:300]}",
            "a reachable registry",
            "check that the registry is up (`home-mlops platform status`)",
        ) from None


# --------------------------------------------------------------------------- interruption


@contextmanager
def _interruptible() -> Iterator[Guard]:
    with interruptible(lambda name: DeployInterrupted(
            f"deploy interrupted by {name}; the new containers were removed", hint=KEEP_SERVING)) as guard:
        try:
            yield guard
        finally:
            if guard.noted:
                console.warn(f"{', '.join(guard.noted)} arrived while the deploy was switching or cleaning up: "
                             "it finished that first")


# --------------------------------------------------------------------------- containers


def _run(host: DockerHost, spec: dict, started: _Started):
    import docker.errors

    try:
        container = host.run(spec)
    except docker.errors.APIError as exc:
        raise DeployFailed(f"docker could not start {spec['name']}: {exc.explanation or exc}") from None
    started.containers.append(container)
    return container


def _remove(container, *, stop_timeout: int | None = None) -> None:
    try:
        if stop_timeout is not None:
            container.stop(timeout=stop_timeout)
        container.remove(force=True)
    except Exception:  # noqa: BLE001 - already gone is fine
        pass


def _app_containers(host: DockerHost, app: str, **labels: str) -> list:
    filters = [f"{LABEL_APP}={app}"] + [f"{LABEL_PREFIX}{k}={v}" for k, v in labels.items()]
    return as_host(host).containers(filters)


def _front_doors(host: DockerHost, app: str) -> list:
    """The app's public front doors, whatever their role (a mode change replaces a gateway by a server)."""
    return _app_containers(host, app, slot="public")


_public_gateways = _front_doors  # the name tests and benches use


# --------------------------------------------------------------------------- deploy


@dataclass(frozen=True)
class _Job:
    """One deploy or rollback: what to serve, how, and what to do once it serves."""

    release: Release
    settings: DeploySettings
    registry_auth: dict | None
    state_base: Path | None
    strategy: str
    guard: Guard
    host: DockerHost  # the Docker Engine every step of this deploy uses
    record: bool = True
    on_switched: Callable[[], None] | None = None

    @property
    def secrets(self) -> list[str]:
        return [(self.registry_auth or {}).get("password", "")]


def deploy(release: Release, settings: DeploySettings | None = None, *, registry_auth: dict | None = None,
           state_base: Path | None = None, strategy: str = "reuseport") -> DeployResult:
    """Deploy ``release`` with ``settings``; see the module docstring for the steps.

    ``strategy="recreate"`` (stop the old gateway, then start the new one) exists only
    as the benchmark's baseline. Raises DeployFailed (6), NotFound (3), Unavailable (7),
    BadInput (2).
    """
    settings = settings or DeploySettings()
    settings.check_supported()
    release.validate(settings.serving)
    if strategy not in ("reuseport", "recreate"):
        raise BadInput(f"unknown deploy strategy {strategy!r}", "reuseport or recreate")
    with _interruptible() as guard, state.app_lock(release.app, f"deploying run {release.run_id}", state_base):
        return _deploy_locked(_Job(release, settings, registry_auth, state_base, strategy, guard,
                                   docker_host.connect()))


def _start_on_private_port(job: _Job, started: _Started, make_spec: Callable[[int], dict]):
    """Pick a loopback port and start the container that claims it, both under the host lock."""
    with state.host_lock(f"{job.release.app}: picking a port", job.settings.ready_timeout, job.state_base):
        port = pick_private_port(job.host, job.settings.port)
        return port, _run(job.host, make_spec(port), started)


def smoke_body(role: str, payload: dict) -> dict:
    """The smoke test's body for the front door that gets it: MLflow scoring JSON for a FastAPI
    front door, ``{"inputs": records}`` for a BentoML server."""
    if role == "bento" and "dataframe_records" in payload:
        return {"inputs": payload["dataframe_records"]}
    return payload


def _deploy_locked(job: _Job) -> DeployResult:
    release, settings = job.release, job.settings
    app, port, bind = release.app, settings.port, settings.bind
    front = front_door(settings)
    started_at = time.monotonic()
    deadline = started_at + settings.ready_timeout
    host = job.host
    enable_reuseport_migration()

    console.step(f"deploy {app}: run {release.run_id} on {bind}:{port} (serving {settings.serving})")
    # leftovers of an interrupted deploy (the app lock says no deploy of this app is running now)
    for c in _app_containers(host, app, slot="candidate"):
        _remove(c)
    check_public_port(host, app, port, bind)  # fail before anything is pulled or started; again at the switch
    for role in SERVING_ROLES[settings.serving]:
        ensure_image(host, release.image(role), job.registry_auth)

    deploy_id = time.strftime("%m%d%H%M%S") + secrets.token_hex(2)
    deployed_at = state.now_iso()
    short = release.run_id[:8]
    started = _Started()
    switched = False
    old_stopped: list = []
    kept: dict[str, tuple[str, dict]] = {}  # role -> (container name, spec) of what keeps running
    model_server = None
    bento_port, bento_name = 0, ""
    try:
        # 1. the model server behind a gateway (bento+gateway only)
        if front == "gateway":
            bento_name = f"hm-{app}-bento-{short}-{deploy_id}"

            def bento_of(p: int) -> dict:
                return bento_spec(release, Slot("bento", bento_name, p, deploy_id, deployed_at), settings)

            bento_port, model_server = _start_on_private_port(job, started, bento_of)
            kept["bento"] = (bento_name, bento_of(bento_port))
            console.step(f"started model server {bento_name} on {LOOPBACK}:{bento_port}")
            wait_ready(model_server, f"http://{LOOPBACK}:{bento_port}/readyz", deadline, "the model server",
                       job.secrets)
            console.ok("model server ready")

        def front_slot(name: str, p: int, slot: str) -> Slot:
            return Slot(front, name, p, deploy_id, deployed_at, slot, bento_port, bento_name)

        # 2. a candidate front door on a private port, smoke-tested
        cand_name = f"hm-{app}-{front}cand-{short}-{deploy_id}"

        def candidate_of(p: int) -> dict:
            return SPECS[front](release, front_slot(cand_name, p, "candidate"), settings)

        cand_port, cand = _start_on_private_port(job, started, candidate_of)
        console.step(f"started candidate {front} on {LOOPBACK}:{cand_port}")
        wait_ready(cand, f"http://{LOOPBACK}:{cand_port}/readyz", deadline, f"the candidate {front}", job.secrets)
        if release.smoke_payload:
            smoke(f"http://{LOOPBACK}:{cand_port}/predict", smoke_body(front, release.smoke_payload),
                  [c for c in (cand, model_server) if c is not None], job.secrets)
            console.ok("smoke test passed (POST /predict with the model's input example)")
        else:
            console.warn("no smoke payload (the model has no input example): only readiness was checked")
        _remove(cand)
        started.containers.remove(cand)

        # 3. the public front door, next to the old one (SO_REUSEPORT), then the old one goes
        public_name = f"hm-{app}-{front}-{short}-{deploy_id}"
        public_spec = SPECS[front](release, front_slot(public_name, port, "public"), settings)
        kept[front] = (public_name, public_spec)
        with state.host_lock(f"{app}: switching port {port}", settings.ready_timeout, job.state_base):
            check_public_port(host, app, port, bind)
            old_fronts = _front_doors(host, app)
            old_running = [g for g in old_fronts if g.status == "running"]
            previous_run_id = old_running[0].labels.get(LABEL_RUN) if old_running else None
            job.guard.check()  # nothing is switched after a signal, even one a probe swallowed
            switch_start = time.monotonic()
            public = _switch(job, public_spec, old_running, started, old_stopped, deploy_id,
                             max(deadline, time.monotonic() + 30))
            switched = True
            job.guard.armed = False
            # 4. retire the old front doors first (graceful drain), the rest of the old deploys after
            for g in old_fronts:
                if g.id != public.id:
                    console.step(f"stopping old front door {g.name} (drains in-flight requests)")
                    _remove(g, stop_timeout=STOP_TIMEOUT)
        switch_seconds = time.monotonic() - switch_start
    except BaseException as exc:
        job.guard.armed = False  # a second signal must not cut the cleanup short
        if not switched:
            console.warn(f"deploy of run {release.run_id} failed; removing the new containers, "
                         "the old deployment keeps serving")
            # by label too: a signal may land between docker starting a container and our noting it
            tracked = {c.id for c in started.containers}
            late = [c for c in _app_containers(host, app, **{"deploy-id": deploy_id}) if c.id not in tracked]
            for c in [*reversed(started.containers), *late]:
                _remove(c)
            for c in old_stopped:  # a bind change stopped the old front door first: it serves again
                try:
                    c.start()
                except Exception:  # noqa: BLE001
                    console.warn(f"could not restart the old front door {c.name}")
        if job.guard.interrupted_by and not isinstance(exc, DeployInterrupted):
            # the signal surfaced as another failure (a probe saw the container go mid-call): say what it was
            raise job.guard.error() from exc
        if isinstance(exc, HomeMlopsError) or not isinstance(exc, Exception):
            raise
        raise DeployFailed(f"deploy of run {release.run_id} failed: {type(exc).__name__}: "
                           f"{scrub(str(exc), job.secrets)}", hint=KEEP_SERVING) from exc

    for c in _app_containers(host, app):
        if c.labels.get(LABEL_DEPLOY_ID) != deploy_id:
            console.step(f"stopping {c.labels.get(LABEL_ROLE, 'container')} {c.name} of an earlier deploy")
            _remove(c, stop_timeout=STOP_TIMEOUT)
    console.ok(f"switched to run {release.run_id} in {switch_seconds:.2f} s")

    if job.on_switched:
        job.on_switched()
    if job.record:
        state.record_deployment(app, {
            "run_id": release.run_id, "experiment_id": release.experiment_id, "model_id": release.model_id or "",
            "bento_image": release.bento_image, "gateway_image": release.gateway_image,
            "server_image": release.server_image,
            "smoke_payload": release.smoke_payload, **settings.model_dump(),
        }, job.state_base)
    compose = state.write_compose(app, compose_services(kept), job.state_base)
    names = {role: name for role, (name, _spec) in kept.items()}
    return DeployResult(
        app=app, run_id=release.run_id, url=public_url(bind, port), local_url=f"http://{LOOPBACK}:{port}",
        port=port, bind=bind, bento_image=release.bento_image if "bento" in kept else "",
        gateway_image=release.gateway_image if "gateway" in kept else "",
        bento_container=names.get("bento", ""), gateway_container=names.get("gateway", ""),
        previous_run_id=previous_run_id, switch_seconds=round(switch_seconds, 3), compose_file=str(compose),
        experiment_id=release.experiment_id, model_id=release.model_id or "",
        bento_port=bento_port or (port if front == "bento" else 0),
        deploy_seconds=round(time.monotonic() - started_at, 3), serving=settings.serving,
        server_image=release.server_image if "server" in kept else "", server_container=names.get("server", ""),
        front_door=front,
    )


def _switch(job: _Job, gw_spec: dict, old_running: list, started: _Started, old_stopped: list,
            deploy_id: str, deadline: float):
    """Start the new public front door and make sure it answers; returns its container.

    Same port and bind: SO_REUSEPORT overlap. A changed bind address cannot overlap (the
    kernel prefers the more specific listener), so the old front door is stopped first and
    started again if the new one fails; ``recreate`` (benchmark baseline) removes it first.
    """
    port, bind = job.settings.port, job.settings.bind
    same_port = [g for g in old_running if g.labels.get(LABEL_PORT) == str(port)]
    if job.strategy == "recreate":
        for g in same_port:
            _remove(g, stop_timeout=STOP_TIMEOUT)
        same_port = []
    moved = [g for g in same_port if g.labels.get(LABEL_BIND, LOOPBACK) != bind]
    if moved:
        console.warn(f"the bind address changes to {bind}: port {port} does not answer for a moment")
        for g in moved:
            g.stop(timeout=STOP_TIMEOUT)
            old_stopped.append(g)
        same_port = []
    old_sends_id = sends_deploy_id(port) if same_port else None
    console.step(f"starting public front door {gw_spec['name']} on {bind}:{port}")
    gateway = _run(job.host, gw_spec, started)
    verify_public(gateway, port, deploy_id, deadline, job.secrets, old_sends_id)
    return gateway


def rollback(app: str, *, registry_auth: dict | None = None, state_base: Path | None = None) -> DeployResult:
    """Redeploy the previous (not rolled back) entry of the app's history, with that entry's settings
    (port and bind of the current one: the app stays where its clients call it)."""
    validate_app(app)
    with _interruptible() as guard, state.app_lock(app, "rolling back", state_base):
        entries = state.active_entries(state.read_history(app, state_base))
        if len(entries) < 2:
            raise NotFound(
                f"app {app!r} has no previous deployment to roll back to",
                "at least two deployments in the app's history (since its last undeploy)",
                "deploy the run you want with `home-mlops deploy`",
            )
        current, previous = entries[-1], entries[-2]
        console.step(f"rolling {app} back from run {current['run_id']} to run {previous['run_id']}")
        saved = {k: previous[k] for k in DeploySettings.model_fields if k in previous}
        saved.update({k: current[k] for k in ("port", "bind") if k in current})
        release = Release(app, previous["experiment_id"], previous["run_id"], previous.get("model_id", ""),
                          previous.get("bento_image", ""), previous.get("gateway_image", ""),
                          previous.get("smoke_payload"), previous.get("server_image", ""))
        settings = DeploySettings(**saved)
        return _deploy_locked(_Job(
            release.validate(settings.serving), settings, registry_auth, state_base, "reuseport", guard,
            docker_host.connect(), record=False,
            on_switched=lambda: state.mark_rolled_back(app, current["run_id"], state_base),
        ))


# --------------------------------------------------------------------------- undeploy


def undeploy(app: str, *, state_base: Path | None = None) -> list[str]:
    """Stop and remove every container of ``app`` (gateways first, draining), under the app lock;
    records the undeploy in the app's history. Returns the removed containers' names."""
    validate_app(app)
    with state.app_lock(app, "undeploying", state_base):
        containers = _app_containers(docker_host.connect(), app)
        containers.sort(key=lambda c: c.labels.get(LABEL_ROLE) != "gateway")
        names = []
        for c in containers:
            _remove(c, stop_timeout=STOP_TIMEOUT)
            names.append(c.name)
        if names:
            state.record_undeploy(app, names, state_base)
        return names
