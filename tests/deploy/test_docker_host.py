"""deploy/ against an in-memory Docker host (no daemon): the status rows it reads from container
labels and states, and decisions of the switch that must leave the serving deployment alone.

``docker_host.connect`` is replaced by ``FakeHost``, which implements the same methods as
``docker_host.DockerHost`` over a list of ``FakeContainer`` objects (the attributes and methods
deploy/ uses of the docker SDK's containers).
"""
from __future__ import annotations

import itertools

import docker
import docker.errors
import pytest

from home_mlops.deploy import docker_host, state
from home_mlops.deploy import status as deploy_status
from home_mlops.deploy import switch as dp
from home_mlops.deploy.docker_host import DockerHost, as_host
from home_mlops.deploy.ports import PRIVATE_PORTS
from home_mlops.deploy.specs import (
    LABEL_APP, LABEL_BIND, LABEL_DEPLOY_ID, LABEL_DEPLOYED_AT, LABEL_EXPERIMENT, LABEL_MODEL, LABEL_PORT,
    LABEL_ROLE, LABEL_RUN, LABEL_SERVING, LABEL_SLOT, LABEL_UPSTREAM, public_url,
)
from home_mlops.errors import DeployFailed, ExitCode

REGISTRY = "127.0.0.1:5000/home-mlops"
_ids = itertools.count(1)


class FakeContainer:
    """What deploy/ uses of a docker SDK container."""

    def __init__(self, host: "FakeHost", name: str, labels: dict, *, status: str = "running",
                 health: str | None = None, image: str = "", image_id: str = "", logs: bytes = b"") -> None:
        self.host, self.name, self.labels, self.status = host, name, dict(labels), status
        self.id = f"{next(_ids):064x}"
        self.health, self.log_bytes = health, logs
        self.image, self.image_id = image, image_id
        self.stops: list[int | None] = []
        self.removed = False

    @property
    def attrs(self) -> dict:
        state_ = {"Status": self.status} | ({"Health": {"Status": self.health}} if self.health else {})
        return {"State": state_, "Config": {"Image": self.image}, "Image": self.image_id,
                "Created": "2026-12-01T10:00:00.000000000Z"}

    def reload(self) -> None:
        if self.removed:
            raise docker.errors.NotFound(f"No such container: {self.name}")

    def logs(self, tail: int = 15) -> bytes:
        return self.log_bytes

    def stop(self, timeout: int | None = None) -> None:
        self.stops.append(timeout)
        self.status = "exited"

    def start(self) -> None:
        self.status = "running"

    def remove(self, force: bool = False) -> None:
        self.removed = True
        self.host.all.remove(self)


def _matches(container: FakeContainer, label: str) -> bool:
    key, eq, value = label.partition("=")
    return key in container.labels and (not eq or container.labels[key] == value)


class FakeHost:
    """docker_host.DockerHost's methods over in-memory containers and images; records what was done."""

    def __init__(self, images: dict[str, str] | None = None, digests: dict[str, str] | None = None,
                 run_status: str = "running", run_logs: bytes = b"") -> None:
        self.all: list[FakeContainer] = []
        self.images = dict(images or {})  # ref or id -> image id
        self.digests = dict(digests or {})  # image id -> registry digest
        self.run_status, self.run_logs = run_status, run_logs
        self.looked_up: list[str] = []
        self.pulled: list[tuple[str, str]] = []
        self.ran: list[dict] = []

    def add(self, name: str, labels: dict, **kw) -> FakeContainer:
        c = FakeContainer(self, name, labels, **kw)
        self.all.append(c)
        return c

    # the DockerHost interface
    def image_id(self, ref: str) -> str:
        self.looked_up.append(ref)
        if ref not in self.images:
            raise docker.errors.ImageNotFound(f"No such image: {ref}")
        return self.images[ref]

    def pull(self, repo: str, tag: str, auth: dict | None) -> str:
        self.pulled.append((repo, tag))
        raise docker.errors.NotFound(f"manifest for {repo}:{tag} not found")

    def image_digest(self, image_id: str) -> str:
        if image_id not in self.images.values():
            raise docker.errors.ImageNotFound(f"No such image: {image_id}")
        return self.digests.get(image_id, image_id)

    def run(self, spec: dict) -> FakeContainer:
        self.ran.append(spec)
        return self.add(spec["name"], spec["labels"], status=self.run_status, image=spec["image"],
                        image_id=self.images.get(spec["image"], ""), logs=self.run_logs)

    def containers(self, labels: list[str]) -> list[FakeContainer]:
        return [c for c in self.all if all(_matches(c, label) for label in labels)]

    def container(self, name: str) -> FakeContainer:
        for c in self.all:
            if name in (c.name, c.id):
                return c
        raise docker.errors.NotFound(f"No such container: {name}")

    def listed(self, label: str) -> list[dict]:
        return [{"Names": [f"/{c.name}"], "State": c.status, "Labels": dict(c.labels)}
                for c in self.all if _matches(c, label)]


def labels(app: str, role: str, port: int, *, slot: str = "", serving: str = "bento+gateway",
           run: str = "a" * 32, bind: str = "127.0.0.1", deploy_id: str = "old", upstream: str = "") -> dict:
    out = {LABEL_SERVING: serving, LABEL_APP: app, LABEL_ROLE: role, LABEL_RUN: run, LABEL_EXPERIMENT: "7",
           LABEL_MODEL: "m-1", LABEL_PORT: str(port), LABEL_BIND: bind, LABEL_DEPLOY_ID: deploy_id,
           LABEL_DEPLOYED_AT: "2026-12-01T10:00:00+00:00"}
    if slot:
        out[LABEL_SLOT] = slot
    if upstream:
        out[LABEL_UPSTREAM] = upstream
    return out


@pytest.fixture
def fake(monkeypatch, tmp_path) -> FakeHost:
    """The deploy's Docker host is a FakeHost; the host deploy lock lives in tmp_path; no sysctl writes."""
    host = FakeHost()
    monkeypatch.setattr(docker_host, "connect", lambda: host)
    monkeypatch.setattr(state, "HOST_LOCK_DIR", tmp_path / "no-run-lock")
    monkeypatch.setattr(dp, "enable_reuseport_migration", lambda: None)
    return host


# --------------------------------------------------------------------------- the seam


def test_a_docker_sdk_client_is_wrapped_and_a_host_passes_through():
    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41")  # no daemon asked
    wrapped = as_host(client)
    assert isinstance(wrapped, DockerHost) and wrapped.client is client
    host = FakeHost()
    assert as_host(host) is host


# --------------------------------------------------------------------------- status


def test_status_rows_come_from_labels_states_and_images(fake, monkeypatch):
    fake.images = {"gw:1": "sha256:gw", "srv:1": "sha256:srv", "bento:1": "sha256:bento"}
    fake.digests = {"sha256:gw": "sha256:d1g1"}
    # hmt-a: bento+gateway, both running, the gateway healthy
    fake.add("hm-hmt-a-bento", labels("hmt-a", "bento", 3101), image="bento:1", image_id="sha256:bento")
    fake.add("hm-hmt-a-gateway", labels("hmt-a", "gateway", 8101, slot="public", bind="0.0.0.0",
                                        upstream="hm-hmt-a-bento"),
             health="healthy", image="gw:1", image_id="sha256:gw")
    fake.add("hm-hmt-a-gatewaycand", labels("hmt-a", "gateway", 3102, slot="candidate"))  # no row of its own
    # hmt-b: fastapi, its server exited
    fake.add("hm-hmt-b-server", labels("hmt-b", "server", 8102, slot="public", serving="fastapi"),
             status="exited", image="srv:1", image_id="sha256:srv")
    # hmt-c: a gateway whose model server is gone, and whose image was removed
    fake.add("hm-hmt-c-gateway", labels("hmt-c", "gateway", 8103, slot="public", upstream="hm-hmt-c-bento"),
             image="gw:0", image_id="sha256:removed")
    answering = {f"http://127.0.0.1:{p}/readyz" for p in (8101, 3101, 8102, 8103)}
    monkeypatch.setattr(deploy_status, "answers", lambda url: url in answering)

    rows = deploy_status.status()
    assert [r["app"] for r in rows] == ["hmt-a", "hmt-b", "hmt-c"]
    a, b, c = rows

    assert (a["front_door"], a["serving"], a["port"], a["bind"]) == ("gateway", "bento+gateway", 8101, "0.0.0.0")
    assert a["url"] == public_url("0.0.0.0", 8101) and a["local_url"] == "http://127.0.0.1:8101"
    assert (a["gateway_container"], a["gateway_image"], a["gateway_digest"]) == ("hm-hmt-a-gateway", "gw:1",
                                                                                 "sha256:d1g1")
    assert (a["bento_container"], a["bento_digest"]) == ("hm-hmt-a-bento", "sha256:bento")  # no digest: the id
    assert a["health"] == "healthy/running" and a["ready"] is True
    assert a["server_container"] is None and a["run_id"] == "a" * 32 and a["model_id"] == "m-1"

    assert (b["front_door"], b["serving"], b["server_state"]) == ("server", "fastapi", "exited")
    assert b["health"] == "exited" and b["ready"] is False  # 8102 answers, but the container is not running
    assert b["gateway_container"] is None and b["bento_container"] is None

    assert c["bento_container"] is None and c["bento_ready"] is False
    assert c["health"] == "running/missing" and c["ready"] is False  # the gateway answers, its model server is gone
    assert (c["gateway_image"], c["gateway_digest"]) == ("gw:0", "")

    assert [r["app"] for r in deploy_status.status("hmt-b")] == ["hmt-b"]
    assert deploy_status.status(host=FakeHost()) == []  # a host given wins over connect()


# --------------------------------------------------------------------------- the switch


def release(app: str, serving: str = "bento+gateway", run: str = "b" * 32) -> dp.Release:
    return dp.Release(app, "7", run, "m-2", f"{REGISTRY}/{app}-bento:2", f"{REGISTRY}/{app}-gateway:2",
                      {"dataframe_records": [{"x": 1.0}]}, f"{REGISTRY}/{app}-server:2")


def test_a_port_another_app_holds_fails_before_anything_is_pulled_or_started(fake, tmp_path):
    port = 8201
    other = fake.add("hm-hmt-other-gateway", labels("hmt-other", "gateway", port, slot="public", run="c" * 32))

    with pytest.raises(DeployFailed) as failed:
        dp.deploy(release("hmt-mine"), dp.DeploySettings(port=port, ready_timeout=5), state_base=tmp_path)

    err = failed.value
    assert err.code == ExitCode.DEPLOY_FAILED
    assert f"port {port} is held by app 'hmt-other' (run {'c' * 32}, container hm-hmt-other-gateway)" in err.what
    assert "nothing was started" in err.what
    assert fake.looked_up == [] and fake.pulled == [] and fake.ran == []  # no image touched, nothing run
    assert fake.all == [other] and other.status == "running" and other.stops == []
    assert state.read_history("hmt-mine", tmp_path) == []


def test_a_candidate_that_stops_before_it_is_ready_is_removed_and_the_old_server_keeps_serving(fake, tmp_path):
    app, port = "hmt-mine", 8202
    image = f"{REGISTRY}/{app}-server:2"
    fake.images = {image: "sha256:new"}
    fake.run_status, fake.run_logs = "exited", b"loading the model\nModelLoadError: boom\n"
    old = fake.add(f"hm-{app}-server-old", labels(app, "server", port, slot="public", serving="fastapi",
                                                  run="a" * 32, bind="0.0.0.0"))

    with pytest.raises(DeployFailed) as failed:
        dp.deploy(release(app), dp.DeploySettings(port=port, serving="fastapi", ready_timeout=5),
                  state_base=tmp_path)

    err = failed.value
    assert err.code == ExitCode.DEPLOY_FAILED
    assert "the candidate server" in err.what and "stopped before it was ready (state exited)" in err.what
    assert "ModelLoadError: boom" in err.what  # its last log lines
    assert fake.looked_up == [image] and fake.pulled == []  # the image was here
    [spec] = fake.ran  # only the candidate: no public front door was started
    assert spec["labels"][LABEL_SLOT] == "candidate" and spec["restart_policy"] == {"Name": "no"}
    assert spec["environment"]["HOME_MLOPS_GATEWAY_HOST"] == "127.0.0.1"
    assert int(spec["labels"][LABEL_PORT]) in PRIVATE_PORTS
    assert fake.all == [old], "the candidate was removed, nothing else"
    assert old.status == "running" and old.stops == [] and not old.removed
    assert state.read_history(app, tmp_path) == []  # not recorded
    assert not state.compose_path(app, tmp_path).exists()


def test_undeploy_stops_the_gateway_before_its_model_server_and_only_that_app(fake, tmp_path):
    app = "hmt-mine"
    bento = fake.add(f"hm-{app}-bento", labels(app, "bento", 3301))
    gateway = fake.add(f"hm-{app}-gateway", labels(app, "gateway", 8301, slot="public", upstream=bento.name))
    bystander = fake.add("hm-hmt-other-server", labels("hmt-other", "server", 8302, slot="public"))
    order: list[str] = []
    for c in (bento, gateway):
        c.stop = (lambda c: lambda timeout=None: (order.append(c.name), FakeContainer.stop(c, timeout)))(c)

    assert dp.undeploy(app, state_base=tmp_path) == [gateway.name, bento.name]
    assert order == [gateway.name, bento.name]
    assert fake.all == [bystander] and bystander.status == "running"
    assert state.read_history(app, tmp_path)[-1]["removed"] == [gateway.name, bento.name]
