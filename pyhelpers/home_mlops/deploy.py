"""Deploy a (bento image, gateway image) pair for one app with no dropped requests.

The switch-over, in order (all containers use host networking and bind 127.0.0.1):

1. lock the app (a second deploy of the same app fails at once);
2. make sure both images are present locally (else pull them with the registry's
   credentials; a missing image is NotFound and nothing was touched);
3. check the public port: free, or held by this app's own public gateway;
4. start the new bento on a free port in 3000-3999 and wait for ``/readyz``;
5. start a *candidate* gateway on a private port in front of it, wait for
   ``/readyz`` and smoke-test ``POST /predict`` with the model's input example;
6. start the new *public* gateway on the public port: it binds with SO_REUSEPORT,
   so for a moment the old and the new gateway both accept; once the new one
   holds a listener and answers, the old gateway gets SIGTERM (it stops accepting,
   its queued connections migrate to the twin - net.ipv4.tcp_migrate_req=1 - and
   it drains in-flight requests), then the old bento is stopped;
7. record the deployment in the app's history and write its docker-compose.yml.

A failure before step 6 completes removes only the new containers: the old pair
never stopped serving (exit code 6, DeployFailed, with the failing container's
last log lines).
"""
from __future__ import annotations

import dataclasses
import errno
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import console
from . import deploy_state as state
from .errors import BadInput, DeployFailed, HomeMlopsError, NotFound, Unavailable
from .params import validate_app, validate_experiment_id, validate_run_id
from .platform import docker_client, enable_reuseport_migration
from .registry import auth_for

LABEL_PREFIX = "io.homemlops."
LABEL_APP = LABEL_PREFIX + "app"
LABEL_ROLE = LABEL_PREFIX + "role"  # bento | gateway
LABEL_SLOT = LABEL_PREFIX + "slot"  # public | candidate (gateways only)
LABEL_RUN = LABEL_PREFIX + "run-id"
LABEL_EXPERIMENT = LABEL_PREFIX + "experiment-id"
LABEL_MODEL = LABEL_PREFIX + "model-id"
LABEL_PORT = LABEL_PREFIX + "port"
LABEL_UPSTREAM = LABEL_PREFIX + "upstream"  # gateway -> its bento container's name
LABEL_DEPLOY_ID = LABEL_PREFIX + "deploy-id"

BENTO_PORTS = range(3000, 4000)
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL for a gateway
SMOKE_BURST = 16  # fresh connections to the public port that must all succeed before the old gateway stops

_BENTO_HEALTH_CODE = (
    "import os,urllib.request;"
    "urllib.request.build_opener(urllib.request.ProxyHandler({})).open("
    "'http://127.0.0.1:%s/readyz' % os.environ.get('BENTOML_PORT','3000'), timeout=3)"
)
_GATEWAY_HEALTH_CODE = (
    "import os,urllib.request;"
    "urllib.request.build_opener(urllib.request.ProxyHandler({})).open("
    "'http://127.0.0.1:%s/healthz' % os.environ.get('HOME_MLOPS_GATEWAY_PORT','8000'), timeout=3)"
)


@dataclass(frozen=True)
class Resources:
    """Per-container limits (docker's mem_limit strings and CPU counts)."""

    bento_mem: str = "2g"
    bento_cpus: float = 1.0
    gateway_mem: str = "512m"
    gateway_cpus: float = 1.0


@dataclass
class DeployResult:
    app: str
    run_id: str
    url: str
    bento_image: str
    gateway_image: str
    bento_container: str
    gateway_container: str
    previous_run_id: str | None
    switch_seconds: float
    compose_file: str
    experiment_id: str = ""
    model_id: str = ""
    bento_port: int = 0
    deploy_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Pair:
    """What a deploy started (removed again if it fails before the switch)."""

    containers: list[Any] = field(default_factory=list)


# --------------------------------------------------------------------------- small helpers


def _http():
    import httpx

    # fresh connection per request, no proxies from the environment (loopback only)
    return httpx.Client(trust_env=False, timeout=httpx.Timeout(5.0, connect=2.0),
                        limits=httpx.Limits(max_keepalive_connections=0))


def _port_bindable(port: int, host: str = LOOPBACK) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        return True
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        sock.close()


def _free_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


def _claimed_ports(client) -> set[int]:
    ports = set()
    for c in client.containers.list(all=True, filters={"label": LABEL_PORT}):
        try:
            ports.add(int(c.labels.get(LABEL_PORT, "")))
        except ValueError:
            pass
    return ports


def _pick_bento_port(client) -> int:
    claimed = _claimed_ports(client)
    candidates = [p for p in BENTO_PORTS if p not in claimed]
    secrets.SystemRandom().shuffle(candidates)
    for port in candidates:
        if _port_bindable(port):
            return port
    raise DeployFailed("no free port for the model server in 3000-3999", hint="stop unused services or containers")


_SECRET_RE = re.compile(r"(?i)((?:password|passwd|secret|token|api[_-]?key|authorization)\s*[=:]\s*)\S+")


def _scrub(text: str, secrets_: list[str]) -> str:
    for value in secrets_:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _SECRET_RE.sub(r"\1***", text)


def _log_tail(container, lines: int = 15, secrets_: list[str] | None = None) -> str:
    try:
        raw = container.logs(tail=lines).decode("utf-8", "replace").rstrip()
    except Exception:  # noqa: BLE001 - best effort, the container may be gone
        return "(no log available)"
    raw = _scrub(raw, secrets_ or [])
    return "\n".join("    | " + line[:300] for line in raw.splitlines()[-lines:]) or "    | (empty log)"


def _container_state(container) -> tuple[str, str | None]:
    try:
        container.reload()
    except Exception:  # noqa: BLE001
        return "gone", None
    st = container.attrs.get("State", {})
    return st.get("Status", "unknown"), (st.get("Health") or {}).get("Status")


def _remove(container, *, stop_timeout: int | None = None) -> None:
    try:
        if stop_timeout is not None:
            container.stop(timeout=stop_timeout)
        container.remove(force=True)
    except Exception:  # noqa: BLE001 - already gone is fine
        pass


def _listener_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for line in handle:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return inodes


def _holds_listener(container, port: int) -> bool | None:
    """True when a process of ``container`` owns a LISTEN socket on ``port``; None if we cannot tell."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    try:
        top = container.top()
        pid_col = top["Titles"].index("PID")
        pids = [row[pid_col] for row in top["Processes"]]
    except Exception:  # noqa: BLE001
        return None
    inodes = _listener_inodes(port)
    seen_any = False
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        seen_any = True
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False if seen_any else None


def _count_records(payload: dict) -> int | None:
    for key in ("dataframe_records", "instances", "inputs"):
        value = payload.get(key)
        if isinstance(value, list):
            return len(value)
        if isinstance(value, dict):  # columnar {col: [values]}
            lengths = {len(v) for v in value.values() if isinstance(v, list)}
            return lengths.pop() if len(lengths) == 1 else None
    split = payload.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("data"), list):
        return len(split["data"])
    return None


# --------------------------------------------------------------------------- images


def ensure_image(client, ref: str, registry_auth: dict | None) -> str:
    """The local image id of ``ref``; pulled from its registry when it is not here."""
    import docker.errors
    from docker.utils import parse_repository_tag

    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        pass
    repo, tag = parse_repository_tag(ref)
    auth = registry_auth if registry_auth is not None else auth_for(ref)
    console.step(f"pulling {ref}")
    try:
        image = client.images.pull(repo, tag=tag or "latest", auth_config=auth)
        console.ok(f"pulled {ref}")
        return image.id
    except docker.errors.APIError as exc:
        text = _scrub(str(exc.explanation or exc), [(auth or {}).get("password", "")])
        lowered = text.lower()
        if exc.status_code == 404 or "not found" in lowered or "manifest unknown" in lowered or "name unknown" in lowered:
            raise NotFound(
                f"image {ref} is neither on this host nor in its registry",
                "an image built and pushed by `home-mlops bento-build` / `fastapi-build` for this run",
                "run the build steps for this run first (or check AR_NAME and the run id)",
            ) from None
        if "unauthorized" in lowered or "no basic auth" in lowered or "authentication required" in lowered:
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


# --------------------------------------------------------------------------- containers


def _labels(app: str, role: str, run_id: str, experiment_id: str, model_id: str, port: int,
            deploy_id: str, **extra: str) -> dict[str, str]:
    labels = {
        LABEL_APP: app,
        LABEL_ROLE: role,
        LABEL_RUN: run_id,
        LABEL_EXPERIMENT: experiment_id,
        LABEL_MODEL: model_id or "",
        LABEL_PORT: str(port),
        LABEL_DEPLOY_ID: deploy_id,
    }
    labels.update({LABEL_PREFIX + k.replace("_", "-"): v for k, v in extra.items()})
    return labels


def _healthcheck(code: str, start_period: int) -> dict:
    second = 1_000_000_000
    return {
        "test": ["CMD", "python3", "-c", code],
        "interval": 5 * second,
        "timeout": 3 * second,
        "retries": 3,
        "start_period": start_period * second,
    }


def _bento_spec(app, run_id, experiment_id, model_id, image, port, deploy_id, resources, name) -> dict:
    return dict(
        image=image,
        name=name,
        environment={
            "BENTOML_HOST": LOOPBACK,
            "BENTOML_PORT": str(port),
            "HOME_MLOPS_APP": app,
            "HOME_MLOPS_RUN_ID": run_id,
            "HOME_MLOPS_EXPERIMENT_ID": experiment_id,
            "HOME_MLOPS_MODEL_ID": model_id or "",
        },
        labels=_labels(app, "bento", run_id, experiment_id, model_id, port, deploy_id),
        mem_limit=resources.bento_mem,
        nano_cpus=int(resources.bento_cpus * 1e9),
        healthcheck=_healthcheck(_BENTO_HEALTH_CODE, 60),
        restart_policy={"Name": "unless-stopped"},
    )


def _gateway_spec(app, run_id, experiment_id, model_id, image, port, upstream_port, upstream_name,
                  deploy_id, resources, name, slot) -> dict:
    return dict(
        image=image,
        name=name,
        environment={
            "HOME_MLOPS_UPSTREAM_URL": f"http://{LOOPBACK}:{upstream_port}",
            "HOME_MLOPS_GATEWAY_HOST": LOOPBACK,
            "HOME_MLOPS_GATEWAY_PORT": str(port),
            "HOME_MLOPS_GATEWAY_GRACEFUL_TIMEOUT": str(STOP_TIMEOUT - 2),
            "HOME_MLOPS_APP": app,
            "HOME_MLOPS_RUN_ID": run_id,
        },
        labels=_labels(app, "gateway", run_id, experiment_id, model_id, port, deploy_id,
                       slot=slot, upstream=upstream_name),
        mem_limit=resources.gateway_mem,
        nano_cpus=int(resources.gateway_cpus * 1e9),
        healthcheck=_healthcheck(_GATEWAY_HEALTH_CODE, 20),
        restart_policy={"Name": "unless-stopped"} if slot == "public" else {"Name": "no"},
        stop_signal="SIGTERM",
    )


def _run(client, spec: dict, pair: _Pair):
    import docker.errors

    try:
        container = client.containers.run(
            detach=True,
            network_mode="host",
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}},
            **spec,
        )
    except docker.errors.APIError as exc:
        raise DeployFailed(f"docker could not start {spec['name']}: {exc.explanation or exc}") from None
    pair.containers.append(container)
    return container


def _fail_if_stopped(container, what: str, secrets_: list[str], hint: str) -> None:
    """A container that exited (or is crash-looping) fails the deploy with its last log lines."""
    status, _ = _container_state(container)
    if status in ("exited", "dead", "gone", "restarting"):
        raise DeployFailed(
            f"{what} (state {status}); its last log lines:\n" + _log_tail(container, secrets_=secrets_), hint=hint
        )


def _wait_ready(container, url: str, deadline: float, what: str, secrets_: list[str]) -> None:
    """Poll ``url`` until 200; fail early if the container exits."""
    last = "no answer yet"
    with _http() as http:
        while True:
            _fail_if_stopped(container, f"{what} ({container.name}) stopped before it was ready", secrets_,
                             "fix the image for this run; the previous deployment is still serving")
            try:
                resp = http.get(url)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except Exception as exc:  # noqa: BLE001
                last = type(exc).__name__
            if time.monotonic() > deadline:
                raise DeployFailed(
                    f"{what} ({container.name}) was not ready at {url} in time (last: {last}); its last log lines:\n"
                    + _log_tail(container, secrets_=secrets_),
                    hint="raise the timeout if the model is slow to load, or fix the image; "
                    "the previous deployment is still serving",
                )
            time.sleep(0.2)


def _smoke(url: str, payload: dict, containers: list, secrets_: list[str]) -> None:
    expected = _count_records(payload)
    with _http() as http:
        try:
            resp = http.post(url, json=payload, timeout=30)
        except Exception as exc:  # noqa: BLE001
            raise DeployFailed(f"smoke test POST {url} failed: {type(exc).__name__}: {exc}") from None
    problem = None
    body: Any = None
    if resp.status_code != 200:
        problem = f"answered HTTP {resp.status_code}: {_scrub(resp.text[:300], secrets_)}"
    else:
        try:
            body = resp.json()
        except ValueError:
            problem = "answered something that is not JSON"
        else:
            preds = body.get("predictions") if isinstance(body, dict) else None
            if not isinstance(preds, list):
                problem = "answered JSON without a 'predictions' list"
            elif expected is not None and len(preds) != expected:
                problem = f"answered {len(preds)} predictions for {expected} input records"
    if problem:
        logs = "\n".join(f"  {c.name}:\n{_log_tail(c, secrets_=secrets_)}" for c in containers)
        raise DeployFailed(
            f"smoke test of the new pair failed: POST /predict with the model's input example {problem}; "
            f"last log lines:\n{logs}",
            "HTTP 200 with one prediction per input record",
            "fix the model or serving code for this run; the previous deployment is still serving",
        )


def _verify_public(container, port: int, deadline: float, secrets_: list[str]) -> None:
    """The new public gateway owns a listener on ``port`` and the port answers on fresh connections."""
    while True:
        _fail_if_stopped(container, f"the new public gateway ({container.name}) stopped", secrets_,
                         "the previous deployment is still serving")
        holds = _holds_listener(container, port)
        if holds or holds is None:
            break
        if time.monotonic() > deadline:
            raise DeployFailed(
                f"the new public gateway ({container.name}) did not bind port {port} in time; its last log lines:\n"
                + _log_tail(container, secrets_=secrets_),
                hint="the previous deployment is still serving",
            )
        time.sleep(0.1)
    # With two SO_REUSEPORT listeners, fresh connections spread over both: a burst that all succeeds
    # means the new one accepts and answers too (a stuck one would time out here).
    url = f"http://{LOOPBACK}:{port}/readyz"
    with _http() as http:
        for _ in range(SMOKE_BURST):
            for attempt in range(50):
                try:
                    if http.get(url).status_code == 200:
                        break
                except Exception:  # noqa: BLE001
                    pass
                if time.monotonic() > deadline:
                    raise DeployFailed(
                        f"the public port {port} did not answer /readyz after the new gateway started; "
                        "its last log lines:\n" + _log_tail(container, secrets_=secrets_),
                        hint="the previous deployment is still serving",
                    )
                time.sleep(0.1)


def _app_containers(client, app: str, **labels: str) -> list:
    filters = [f"{LABEL_APP}={app}"] + [f"{LABEL_PREFIX}{k}={v}" for k, v in labels.items()]
    return client.containers.list(all=True, filters={"label": filters})


def _public_gateways(client, app: str) -> list:
    return [c for c in _app_containers(client, app, role="gateway", slot="public")]


def _check_port(client, app: str, port: int, old_gateways: list) -> None:
    if _port_bindable(port):
        return
    ours = [g for g in old_gateways if g.labels.get(LABEL_PORT) == str(port) and g.status == "running"]
    if ours:
        return
    owner = "a process that is not a home-mlops gateway"
    for c in client.containers.list(filters={"label": LABEL_PORT}):
        if c.labels.get(LABEL_PORT) == str(port):
            owner = f"container {c.name} (app {c.labels.get(LABEL_APP)!r}, role {c.labels.get(LABEL_ROLE)})"
            break
    raise DeployFailed(
        f"port {port} on {LOOPBACK} is in use by {owner}; nothing was started",
        f"port {port} free, or held by the running gateway of app {app!r}",
        "stop what listens there (`ss -ltnp 'sport = :%d'`) or deploy on another port" % port,
    )


def _compose_services(bento, gateway, bento_spec: dict, gateway_spec: dict, resources: Resources) -> dict:
    def service(container, spec, mem, cpus, stop_grace):
        hc = spec["healthcheck"]
        return {
            "image": spec["image"],
            "container_name": container.name,
            "network_mode": "host",
            "restart": spec["restart_policy"]["Name"],
            "environment": dict(spec["environment"]),
            "labels": dict(spec["labels"]),
            "mem_limit": mem,
            "cpus": cpus,
            "stop_grace_period": f"{stop_grace}s",
            "healthcheck": {
                "test": hc["test"],
                "interval": f"{hc['interval'] // 1_000_000_000}s",
                "timeout": f"{hc['timeout'] // 1_000_000_000}s",
                "retries": hc["retries"],
                "start_period": f"{hc['start_period'] // 1_000_000_000}s",
            },
        }

    gw = service(gateway, gateway_spec, resources.gateway_mem, resources.gateway_cpus, STOP_TIMEOUT)
    gw["depends_on"] = {"bento": {"condition": "service_healthy"}}
    return {
        "bento": service(bento, bento_spec, resources.bento_mem, resources.bento_cpus, STOP_TIMEOUT),
        "gateway": gw,
    }


# --------------------------------------------------------------------------- deploy


def deploy(
    app: str,
    experiment_id: str,
    run_id: str,
    model_id: str,
    bento_image: str,
    gateway_image: str,
    *,
    port: int = 8000,
    registry_auth: dict | None = None,
    smoke_payload: dict | None = None,
    timeout: float = 180,
    resources: Resources | None = None,
    state_base: Path | None = None,
    strategy: str = "reuseport",
) -> DeployResult:
    """Deploy the pair for ``run_id``; see the module docstring for the steps.

    ``strategy="recreate"`` (stop the old gateway, then start the new one) exists only
    as the benchmark's baseline. Raises DeployFailed (6), NotFound (3), Unavailable (7),
    BadInput (2).
    """
    validate_app(app)
    validate_experiment_id(experiment_id)
    validate_run_id(run_id)
    if not 1 <= int(port) <= 65535:
        raise BadInput(f"port {port} is not a TCP port", "1-65535")
    if strategy not in ("reuseport", "recreate"):
        raise BadInput(f"unknown deploy strategy {strategy!r}", "reuseport or recreate")
    with state.app_lock(app, f"deploying run {run_id}", state_base):
        return _deploy_locked(
            app, experiment_id, run_id, model_id, bento_image, gateway_image, port=int(port),
            registry_auth=registry_auth, smoke_payload=smoke_payload, timeout=timeout,
            resources=resources or Resources(), state_base=state_base, strategy=strategy, record=True,
        )


def _deploy_locked(app, experiment_id, run_id, model_id, bento_image, gateway_image, *, port, registry_auth,
                   smoke_payload, timeout, resources, state_base, strategy, record,
                   on_rolled_back: Callable[[], None] | None = None) -> DeployResult:
    started = time.monotonic()
    deadline = started + timeout
    client = docker_client()
    secrets_ = [(registry_auth or {}).get("password", "")]
    enable_reuseport_migration()

    console.step(f"deploy {app}: run {run_id} on {LOOPBACK}:{port}")
    ensure_image(client, bento_image, registry_auth)
    ensure_image(client, gateway_image, registry_auth)

    # leftovers of an interrupted deploy (the lock says no deploy is running now)
    for c in _app_containers(client, app, slot="candidate"):
        _remove(c)
    old_gateways = _public_gateways(client, app)
    old_running = [g for g in old_gateways if g.status == "running"]
    previous_run_id = old_running[0].labels.get(LABEL_RUN) if old_running else None
    _check_port(client, app, port, old_gateways)

    deploy_id = time.strftime("%m%d%H%M%S") + secrets.token_hex(2)
    short = run_id[:8]
    pair = _Pair()
    switched = False
    try:
        # 1. the model server
        bento_port = _pick_bento_port(client)
        bento_name = f"hm-{app}-bento-{short}-{deploy_id}"
        bento_spec = _bento_spec(app, run_id, experiment_id, model_id, bento_image, bento_port, deploy_id,
                                 resources, bento_name)
        console.step(f"starting model server {bento_name} on port {bento_port}")
        bento = _run(client, bento_spec, pair)
        _wait_ready(bento, f"http://{LOOPBACK}:{bento_port}/readyz", deadline, "the model server", secrets_)
        console.ok("model server ready")

        # 2. a candidate gateway on a private port, smoke-tested
        cand_port = _free_port()
        cand_spec = _gateway_spec(app, run_id, experiment_id, model_id, gateway_image, cand_port, bento_port,
                                  bento_name, deploy_id, resources, f"hm-{app}-gwcand-{short}-{deploy_id}",
                                  "candidate")
        console.step(f"starting candidate gateway on port {cand_port}")
        cand = _run(client, cand_spec, pair)
        _wait_ready(cand, f"http://{LOOPBACK}:{cand_port}/readyz", deadline, "the candidate gateway", secrets_)
        if smoke_payload:
            _smoke(f"http://{LOOPBACK}:{cand_port}/predict", smoke_payload, [cand, bento], secrets_)
            console.ok("smoke test passed (POST /predict with the model's input example)")
        else:
            console.warn("no smoke payload (the model has no input example): only readiness was checked")
        _remove(cand)
        pair.containers.remove(cand)

        # 3. the public gateway, next to the old one (SO_REUSEPORT), then the old one goes
        gw_name = f"hm-{app}-gateway-{short}-{deploy_id}"
        gw_spec = _gateway_spec(app, run_id, experiment_id, model_id, gateway_image, port, bento_port,
                                bento_name, deploy_id, resources, gw_name, "public")
        switch_start = time.monotonic()
        if strategy == "recreate":  # baseline only: downtime between these two steps
            for g in old_running:
                _remove(g, stop_timeout=STOP_TIMEOUT)
        console.step(f"starting public gateway {gw_name} on port {port}")
        gateway = _run(client, gw_spec, pair)
        if strategy == "recreate":
            _wait_ready(gateway, f"http://{LOOPBACK}:{port}/readyz", deadline, "the public gateway", secrets_)
        else:
            _verify_public(gateway, port, max(deadline, time.monotonic() + 30), secrets_)
        switched = True
    except BaseException as exc:
        if not switched:
            console.warn(f"deploy of run {run_id} failed; removing the new containers, the old pair keeps serving")
            for c in reversed(pair.containers):
                _remove(c)
        if isinstance(exc, HomeMlopsError) or not isinstance(exc, Exception):
            raise
        raise DeployFailed(f"deploy of run {run_id} failed: {type(exc).__name__}: {_scrub(str(exc), secrets_)}",
                           hint="the previous deployment is still serving") from exc

    # 4. retire the old pair: gateways first (graceful drain), then every other bento of the app
    for g in old_gateways:
        if g.id != gateway.id:
            console.step(f"stopping old gateway {g.name} (drains in-flight requests)")
            _remove(g, stop_timeout=STOP_TIMEOUT)
    switch_seconds = time.monotonic() - switch_start
    for b in _app_containers(client, app, role="bento"):
        if b.id != bento.id:
            console.step(f"stopping old model server {b.name}")
            _remove(b, stop_timeout=STOP_TIMEOUT)
    console.ok(f"switched to run {run_id} in {switch_seconds:.2f} s")

    if on_rolled_back:
        on_rolled_back()
    if record:
        state.record_deployment(app, {
            "run_id": run_id, "experiment_id": experiment_id, "model_id": model_id or "",
            "bento_image": bento_image, "gateway_image": gateway_image, "port": port,
            "smoke_payload": smoke_payload,
        }, state_base)
    compose = state.write_compose(app, _compose_services(bento, gateway, bento_spec, gw_spec, resources), state_base)
    return DeployResult(
        app=app, run_id=run_id, url=f"http://{LOOPBACK}:{port}", bento_image=bento_image,
        gateway_image=gateway_image, bento_container=bento.name, gateway_container=gateway.name,
        previous_run_id=previous_run_id, switch_seconds=round(switch_seconds, 3), compose_file=str(compose),
        experiment_id=experiment_id, model_id=model_id or "", bento_port=bento_port,
        deploy_seconds=round(time.monotonic() - started, 3),
    )


def rollback(
    app: str,
    *,
    registry_auth: dict | None = None,
    timeout: float = 180,
    resources: Resources | None = None,
    state_base: Path | None = None,
) -> DeployResult:
    """Redeploy the previous (not rolled back) entry of the app's history."""
    validate_app(app)
    with state.app_lock(app, "rolling back", state_base):
        entries = state.active_entries(state.read_history(app, state_base))
        if len(entries) < 2:
            raise NotFound(
                f"app {app!r} has no previous deployment to roll back to",
                "at least two deployments in the app's history",
                "deploy the run you want with `home-mlops deploy`",
            )
        current, previous = entries[-1], entries[-2]
        console.step(f"rolling {app} back from run {current['run_id']} to run {previous['run_id']}")
        return _deploy_locked(
            app, previous["experiment_id"], previous["run_id"], previous.get("model_id", ""),
            previous["bento_image"], previous["gateway_image"], port=int(current.get("port", 8000)),
            registry_auth=registry_auth, smoke_payload=previous.get("smoke_payload"), timeout=timeout,
            resources=resources or Resources(), state_base=state_base, strategy="reuseport", record=False,
            on_rolled_back=lambda: state.mark_rolled_back(app, current["run_id"], state_base),
        )


# --------------------------------------------------------------------------- status / undeploy


def _ready(url: str) -> bool:
    try:
        with _http() as http:
            return http.get(url, timeout=2).status_code == 200
    except Exception:  # noqa: BLE001
        return False


def status(app: str | None = None) -> list[dict[str, Any]]:
    """One entry per app with a public gateway container (running or not)."""
    client = docker_client()
    filters = [f"{LABEL_ROLE}=gateway", f"{LABEL_SLOT}=public"] + ([f"{LABEL_APP}={app}"] if app else [])
    out = []
    for gw in client.containers.list(all=True, filters={"label": filters}):
        labels = gw.labels
        app_name = labels.get(LABEL_APP, "")
        bento = None
        try:
            bento = client.containers.get(labels.get(LABEL_UPSTREAM, ""))
        except Exception:  # noqa: BLE001
            pass
        gw_state, gw_health = _container_state(gw)
        entry: dict[str, Any] = {
            "app": app_name,
            "run_id": labels.get(LABEL_RUN),
            "experiment_id": labels.get(LABEL_EXPERIMENT),
            "model_id": labels.get(LABEL_MODEL),
            "url": f"http://{LOOPBACK}:{labels.get(LABEL_PORT)}",
            "gateway_image": gw.attrs.get("Config", {}).get("Image"),
            "gateway_container": gw.name,
            "gateway_state": gw_state,
            "gateway_health": gw_health,
            "gateway_ready": gw_state == "running" and _ready(f"http://{LOOPBACK}:{labels.get(LABEL_PORT)}/readyz"),
            "bento_image": None,
            "bento_container": None,
            "bento_state": None,
            "bento_health": None,
            "bento_ready": False,
        }
        if bento is not None:
            b_state, b_health = _container_state(bento)
            entry.update(
                bento_image=bento.attrs.get("Config", {}).get("Image"),
                bento_container=bento.name,
                bento_state=b_state,
                bento_health=b_health,
                bento_ready=b_state == "running" and _ready(f"http://{LOOPBACK}:{bento.labels.get(LABEL_PORT)}/readyz"),
            )
        out.append(entry)
    return sorted(out, key=lambda e: (e["app"], e["gateway_container"]))


def undeploy(app: str, *, graceful: bool = False) -> list[str]:
    """Remove every container of ``app`` (gateways first); returns their names."""
    validate_app(app)
    client = docker_client()
    containers = _app_containers(client, app)
    containers.sort(key=lambda c: c.labels.get(LABEL_ROLE) != "gateway")
    names = []
    for c in containers:
        _remove(c, stop_timeout=STOP_TIMEOUT if graceful else None)
        names.append(c.name)
    return names
