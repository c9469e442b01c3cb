"""Registries are trusted explicitly (issue 9 item 1, contract 6).

The parsing and defaults are tested directly. The commands are tested through the
real CLI against a recording fake registry on loopback: a threaded HTTP server that
answers every request with 401 and a Basic challenge (what makes a Docker daemon
send the password) and records every connection and Authorization header. One
listener is trusted, one is not: an untrusted AR_NAME must end in exit 2 with zero
connections to it, a trusted one gets the credentials and nobody else does.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import docker_reason, run_cli
from home_mlops.build import registry
from home_mlops.build import trust
from home_mlops.errors import BadInput, ExitCode

APP = "tabular-iris-multi-classifier"
TEST_APP = "hmt-d-trust"
PORTS = range(18400, 18500)
ENV = trust.TRUSTED_REGISTRIES_ENV


# --------------------------------------------------------------------------- the recording fake registry


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None


class _Challenge(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        with self.server.lock:
            self.server.seen.append(Seen(self.command, self.path, self.headers.get("Authorization")))
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="hmt-d"')
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args) -> None:  # quiet
        pass


class RecordingRegistry(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.seen: list[Seen] = []
        super().__init__(("127.0.0.1", port), _Challenge)

    def verify_request(self, request, client_address) -> bool:  # called once per accepted connection
        with self.lock:
            self.connections += 1
        return True

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def authorizations(self) -> set[str]:
        with self.lock:
            return {s.authorization for s in self.seen if s.authorization}


def start_registry(skip: set[int]) -> RecordingRegistry:
    for port in PORTS:
        if port in skip:
            continue
        try:
            server = RecordingRegistry(port)
        except OSError:
            continue
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server
    raise RuntimeError(f"no free port in {PORTS}")


@dataclass
class Registries:
    trusted: RecordingRegistry
    untrusted: RecordingRegistry
    user: str = "hmt-d-user"
    password: str = field(default_factory=lambda: "hmt-d-" + secrets.token_urlsafe(16))

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

    def reset(self) -> None:
        for server in (self.trusted, self.untrusted):
            with server.lock:
                server.connections, server.seen = 0, []


@pytest.fixture(scope="module")
def registries():
    trusted = start_registry(set())
    untrusted = start_registry({trusted.server_address[1]})
    yield Registries(trusted, untrusted)
    for server in (trusted, untrusted):
        server.shutdown()
        server.server_close()


@pytest.fixture
def fresh(registries) -> Registries:
    registries.reset()
    return registries


# --------------------------------------------------------------------------- parsing and defaults (no Docker)


@pytest.fixture
def no_trust_env(monkeypatch, tmp_path) -> Path:
    """No HOME_MLOPS_TRUSTED_REGISTRIES, and a Docker config folder of the test's own."""
    monkeypatch.delenv(ENV, raising=False)
    folder = tmp_path / "docker-config"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder


@pytest.mark.parametrize("ref, host", [
    ("127.0.0.1:5000/home-mlops/app-bento:abc", "127.0.0.1:5000"),
    ("myteam/app-bento:1", "docker.io"),
    ("app-bento:1", "docker.io"),
    ("docker.io/myteam/app:1", "docker.io"),
    ("index.docker.io/myteam/app:1", "docker.io"),
    ("localhost/app:1", "localhost"),
    ("localhost:5000/app:1", "localhost:5000"),
    ("Europe-West1-docker.pkg.dev/proj/models/app:1", "europe-west1-docker.pkg.dev"),
    ("[::1]:5000/app:1", "[::1]:5000"),
])
def test_registry_host_follows_dockers_rule(ref, host):
    assert trust.registry_host(ref) == host


def test_default_is_local_registry_plus_docker_config_auths(no_trust_env):
    (no_trust_env / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": "eDp5"},
        "Ghcr.IO": {},
        "http://reg.example.org:5443/v2/": {},
        "europe-west1-docker.pkg.dev": {},
    }, "credHelpers": {"not-in-auths.example": "gcloud"}}))
    trusted = trust.trusted_registries()
    assert trusted.hosts == {"127.0.0.1:5000", "docker.io", "ghcr.io", "reg.example.org:5443",
                             "europe-west1-docker.pkg.dev"}
    assert trust.require_trusted("docker.io/team/app:1") == "docker.io"
    assert trust.require_trusted("team/app:1") == "docker.io"
    with pytest.raises(BadInput) as err:
        trust.require_trusted("not-in-auths.example/app:1")
    assert "docker login" in err.value.hint  # the default grows with the Docker config


def test_default_without_docker_config_is_the_local_registry_only(no_trust_env):
    assert trust.trusted_registries().hosts == {"127.0.0.1:5000"}
    assert trust.require_trusted("127.0.0.1:5000/home-mlops/x:1") == "127.0.0.1:5000"
    for ref in ("localhost:5000/x:1", "127.0.0.1:5001/x:1", "team/x:1"):
        with pytest.raises(BadInput):
            trust.require_trusted(ref)


def test_docker_config_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"auths": {"home.example:5000": {}}}))
    assert trust.docker_config_path() == tmp_path / ".docker" / "config.json"
    assert "home.example:5000" in trust.trusted_registries().hosts


def test_setting_replaces_the_default_and_is_normalised(no_trust_env, monkeypatch):
    (no_trust_env / "config.json").write_text(json.dumps({"auths": {"ghcr.io": {}}}))
    monkeypatch.setenv(ENV, " Reg.Example.org:5443 , localhost:5000,,index.docker.io ")
    trusted = trust.trusted_registries()
    assert trusted.hosts == {"reg.example.org:5443", "localhost:5000", "docker.io"}
    assert trust.require_trusted("REG.example.org:5443/team/app:1") == "reg.example.org:5443"
    # exact host[:port]: localhost is not 127.0.0.1, a port is not optional, the default is gone
    for ref in ("127.0.0.1:5000/x:1", "reg.example.org/x:1", "ghcr.io/x:1"):
        with pytest.raises(BadInput) as err:
            trust.require_trusted(ref)
        assert err.value.code == ExitCode.BAD_INPUT
        assert ENV in str(err.value) and repr(trust.registry_host(ref)) in str(err.value)
        assert "docker login" not in str(err.value)  # a login does not extend an explicit list


@pytest.mark.parametrize("value", [
    "http://reg.example.org", "reg.example.org/path", "reg example", "reg.example.org:0",
    "reg.example.org:99999", "reg.example.org:", "-bad.example", "reg_example.org", ",", " , ",
    "reg.example.org;rm -rf /", "[/x]",
])
def test_malformed_setting_is_bad_input(no_trust_env, monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(BadInput) as err:
        trust.require_trusted("127.0.0.1:5000/x:1")
    assert err.value.code == ExitCode.BAD_INPUT and ENV in str(err.value)


@pytest.mark.parametrize("content", ["{not json", '{"auths": []}', '["auths"]', b"\xff\xfe"])
def test_malformed_docker_config_is_bad_input(no_trust_env, content):
    path = no_trust_env / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(BadInput) as err:
        trust.require_trusted("127.0.0.1:5000/x:1")
    assert str(path) in str(err.value)


def test_docker_config_keys_that_are_no_host_are_ignored(no_trust_env, capsys):
    """Docker stores any key; one that is no host[:port] can never match an AR_NAME."""
    (no_trust_env / "config.json").write_text(json.dumps({"auths": {
        "bad host": {}, "http://": {}, "[/x]": {}, "reg_x.example": {}, "ok.example:5000": {}}}))
    assert trust.trusted_registries().hosts == {"127.0.0.1:5000", "ok.example:5000"}
    err = capsys.readouterr().err
    assert "'bad host'" in err and "'[/x]'" in err


def test_credentials_only_for_trusted_hosts(no_trust_env, monkeypatch):
    monkeypatch.setenv("REGISTRY_USER", "u")
    monkeypatch.setenv("REGISTRY_PASSWORD", "p-never-leaves")
    monkeypatch.setenv(ENV, "reg.example.org:5443")
    assert registry.auth_for("reg.example.org:5443/team/app:1") == {"username": "u", "password": "p-never-leaves"}
    with pytest.raises(BadInput) as err:
        registry.auth_for("evil.example.org/team/app:1")
    assert "p-never-leaves" not in str(err.value)


def test_every_registry_contact_checks_trust_first(no_trust_env, monkeypatch):
    """Each function that talks to a registry refuses an untrusted one before it needs Docker."""
    monkeypatch.setenv(ENV, "reg.example.org:5443")
    monkeypatch.setattr(registry, "docker_client", lambda *a, **k: pytest.fail("a Docker client was made"))
    ref = "evil.example.org/team/app:1"
    for contact in (lambda: registry.remote_digest(ref, None), lambda: registry.remote_inputs_digest(ref, None),
                    lambda: registry.push(ref, {}), lambda: registry._push_with_retries(ref, None)):
        with pytest.raises(BadInput):
            contact()


@pytest.mark.parametrize("text, transient", [
    ("received unexpected HTTP status: 503 Service Unavailable", True),
    ("received unexpected HTTP status: 500 Internal Server Error", False),
    ('Put "http://127.0.0.1:5000/v2/x/blobs/uploads/": EOF', True),
    ("dial tcp 127.0.0.1:5999: connect: connection refused", True),
    ("blob upload unknown sha256:50350350350", False),  # a digest holding "503" is not a 503
    ("unauthorized: authentication required", False),
])
def test_push_errors_classified_by_status_not_by_digits(text, transient):
    assert registry._is_transient(text) is transient


def test_refused_credentials_hint_by_status():
    assert "REGISTRY_USER" in registry._push_hint("whatever the daemon said", 401)
    assert "unreachable" in registry._push_hint("received unexpected HTTP status: 502 Bad Gateway")


# --------------------------------------------------------------------------- the real CLI, fake registries


needs_docker = pytest.mark.skipif(bool(docker_reason()), reason=docker_reason() or "")


def cli_env(run, regs: Registries, tmp_path: Path, **extra: str) -> dict:
    """The CLI's environment: credentials set, only the trusted fake (and the local registry) trusted."""
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir(exist_ok=True)
    return {
        **run.env, "REGISTRY_USER": regs.user, "REGISTRY_PASSWORD": regs.password,
        ENV: f"{regs.trusted.host},127.0.0.1:5000", "DOCKER_CONFIG": str(docker_config),
        "HOME_MLOPS_PORT": "18450", **extra,
    }


def job_args(command: str, run) -> list[str]:
    return [command, "--app", TEST_APP, "--experiment-id", run.experiment_id, "--run-id", run.run_id]


def run_json(args: list[str], env: dict, out: Path):
    proc = run_cli([*args, "--json", str(out)], env)
    result = json.loads(out.read_text()) if out.exists() else None
    return proc, result


@pytest.fixture
def isolated(tmp_path) -> dict:
    """A state and platform folder of the test's own (deploy writes locks and history there)."""
    return {"HOME_MLOPS_HOME": str(tmp_path / "state"), "HOME_MLOPS_PLATFORM_DIR": str(tmp_path / "platform")}


@pytest.fixture(scope="module")
def our_images():
    """Remove the image tags these tests made (refs on the fake registries' hosts) afterwards."""
    yield
    if docker_reason():
        return
    import docker

    client = docker.from_env()
    # docker's own list (dicts, no inspect per image): another xdist worker may remove an image
    # between a listing and its inspect
    for image in client.api.images():
        for tag in image.get("RepoTags") or ():
            if tag.startswith("127.0.0.1:18") and f"/{TEST_APP}-" in tag:
                client.images.remove(tag, noprune=False)


def built_an_image(stderr: str) -> bool:
    """The build step's own report (build/docker_build.py), in pieces: the console may wrap the line."""
    return bool(re.search(r"(bento|gateway) image", stderr)) and bool(re.search(r"built in|up to date", stderr))


@pytest.mark.parametrize("command", ["deploy", "bento-build", "fastapi-build", "pipeline"])
def test_untrusted_ar_name_exits_2_without_any_connection(command, trained_run, fresh, tmp_path, isolated, our_images):
    if command != "deploy" and docker_reason():
        pytest.skip(docker_reason())
    run = trained_run(APP)
    extra = isolated if command in ("deploy", "pipeline") else {}
    env = cli_env(run, fresh, tmp_path, AR_NAME=f"{fresh.untrusted.host}/hmt-d", **extra)
    proc, result = run_json(job_args(command, run), env, tmp_path / "result.json")
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert fresh.untrusted.host in proc.stderr and ENV in proc.stderr
    assert result["ok"] is False and result["exit_code"] == 2 and fresh.untrusted.host in result["error"]
    assert fresh.password not in proc.stdout + proc.stderr + json.dumps(result)
    assert fresh.untrusted.connections == 0 and fresh.untrusted.seen == []
    assert fresh.trusted.connections == 0
    if command != "deploy":
        # Refused before any build work, so no minutes are spent on a build that cannot be pushed.
        assert not built_an_image(proc.stderr), "the image was built before the registry was checked"


def test_default_trust_refuses_a_host_not_in_the_docker_config(trained_run, fresh, tmp_path, isolated):
    run = trained_run(APP)
    env = cli_env(run, fresh, tmp_path, AR_NAME=f"{fresh.untrusted.host}/hmt-d", **isolated)
    del env[ENV]
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps({"auths": {fresh.trusted.host: {}}}))
    proc, result = run_json(job_args("deploy", run), env, tmp_path / "result.json")
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr[-3000:]
    assert str(Path(env["DOCKER_CONFIG"]) / "config.json") in proc.stderr  # says where the default came from
    assert fresh.untrusted.connections == 0


def test_malformed_setting_through_the_cli(trained_run, fresh, tmp_path, isolated):
    run = trained_run(APP)
    env = cli_env(run, fresh, tmp_path, AR_NAME=f"{fresh.trusted.host}/hmt-d", **{ENV: "[/x]"}, **isolated)
    proc, result = run_json(job_args("deploy", run), env, tmp_path / "result.json")
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and ENV in result["error"]
    assert fresh.trusted.connections == 0


@needs_docker
@pytest.mark.docker
@pytest.mark.parametrize("command", ["bento-build", "fastapi-build"])
def test_no_push_contacts_no_registry(command, trained_run, fresh, tmp_path, our_images):
    """--no-push builds with an untrusted AR_NAME: the ref is only a name, nothing is contacted."""
    run = trained_run(APP)
    env = cli_env(run, fresh, tmp_path, AR_NAME=f"{fresh.untrusted.host}/hmt-d")
    proc, result = run_json([*job_args(command, run), "--no-push"], env, tmp_path / "result.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["pushed"] is False and result["image"].startswith(f"{fresh.untrusted.host}/hmt-d/")
    assert fresh.untrusted.connections == 0 and fresh.trusted.connections == 0


@needs_docker
@pytest.mark.docker
def test_trusted_registry_gets_the_credentials_and_nobody_else(trained_run, fresh, tmp_path, our_images):
    """The daemon does the push: the Basic challenge of the trusted fake makes it send
    REGISTRY_USER:REGISTRY_PASSWORD there (and the push is refused, exit 5)."""
    run = trained_run(APP)
    env = cli_env(run, fresh, tmp_path, AR_NAME=f"{fresh.trusted.host}/hmt-d")
    proc, result = run_json(job_args("bento-build", run), env, tmp_path / "result.json")
    assert proc.returncode == ExitCode.PUSH_FAILED, proc.stderr[-3000:]
    assert "REGISTRY_USER" in proc.stderr  # the hint for refused credentials
    assert fresh.trusted.authorizations() == {fresh.basic}
    assert any("/v2/hmt-d/" in s.path for s in fresh.trusted.seen)
    assert fresh.untrusted.connections == 0
    assert fresh.password not in proc.stdout + proc.stderr + json.dumps(result)


@needs_docker
@pytest.mark.docker
def test_deploy_pulls_only_from_a_trusted_registry(trained_run, fresh, tmp_path, isolated):
    """deploy of images that are not on this host pulls them: from the trusted fake, with
    the credentials; the untrusted one is never contacted."""
    run = trained_run(APP)
    env = cli_env(run, fresh, tmp_path, AR_NAME=f"{fresh.trusted.host}/hmt-d-pull", **isolated)
    proc, result = run_json(job_args("deploy", run), env, tmp_path / "result.json")
    assert proc.returncode in (ExitCode.NOT_FOUND, ExitCode.UNAVAILABLE), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert fresh.trusted.authorizations() == {fresh.basic}
    assert fresh.untrusted.connections == 0
    assert fresh.password not in proc.stdout + proc.stderr + json.dumps(result)


def test_ar_name_prefix_is_checked_like_its_images(no_trust_env, monkeypatch):
    monkeypatch.setenv(ENV, "localhost,reg.example.org:5443")
    assert trust.require_trusted_registry("localhost/team") == "localhost"
    assert trust.require_trusted_registry("reg.example.org:5443/team/models") == "reg.example.org:5443"
    for ar_name in ("team", "127.0.0.1:5000/home-mlops", "docker.io/team"):
        with pytest.raises(BadInput):
            trust.require_trusted_registry(ar_name)

