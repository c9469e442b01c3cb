"""Many apps on one host: racing deploys through the real CLI, the socket table, undeploy, status,
SIGTERM mid-deploy, a non-root deployer, and a sentinel app that must outlive all of it.

Real Docker, real `home-mlops` processes, stand-in images (tests/deploy_fixtures.py).
Every request goes to 127.0.0.1; app names are hmt-b-*, ports 18200-18299.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest


import deploy_fixtures as fx  # noqa: E402
from conftest import CLI, cli_env, docker_reason, run_cli  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
if docker_reason():
    pytest.skip(docker_reason(), allow_module_level=True)

from home_mlops.deploy import switch as dp  # noqa: E402
from home_mlops.deploy import specs as ds  # noqa: E402
from home_mlops.deploy import state as deploy_state  # noqa: E402

EXP = "7"


def run_id() -> str:
    return secrets.token_hex(16)


def app_name(kind: str) -> str:
    return f"hmt-b-{kind}-{secrets.token_hex(2)}"


# --------------------------------------------------------------------------- socket table


def _addr(hex_addr: str) -> str:
    return ".".join(str(b) for b in reversed(bytes.fromhex(hex_addr)))


def listen_addresses(port: int) -> list[str]:
    """Local addresses of every LISTEN socket on ``port`` (IPv4 table; IPv6 listeners shown as 'ipv6')."""
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        with open(table) as handle:
            next(handle)
            for line in handle:
                parts = line.split()
                local, state = parts[1], parts[3]
                addr, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:
                    found.append("ipv6" if v6 else _addr(addr))
    return found


def listener_pids(port: int) -> set[int]:
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return {int(p) for p in re.findall(r"pid=(\d+)", out)}


def container_pids(container) -> set[int]:
    top = container.top()
    col = top["Titles"].index("PID")
    return {int(row[col]) for row in top["Processes"]}


def public_gateway(client, app):
    [gw] = [c for c in dp._public_gateways(client, app) if c.status == "running"]
    return gw


def assert_port_held_only_by(client, app: str, port: int, bind: str = "0.0.0.0") -> None:
    assert listen_addresses(port) == [bind], f"port {port}: {listen_addresses(port)}"
    assert listener_pids(port) <= container_pids(public_gateway(client, app)), f"port {port} shared with another app"


# --------------------------------------------------------------------------- helpers


def predict(port: int) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as http:
        return http.post(f"http://127.0.0.1:{port}/predict", json={"dataframe_records": [{"x": 1.0}]})


def served_run(port: int) -> str:
    resp = predict(port)
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"][0]["run_id"]


class Host:
    """The CLI's environment for these tests: a private platform folder (locks, history)."""

    def __init__(self, root: Path, images: dict):
        self.root = root
        self.images = images
        self.platform = root / "platform"
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = cli_env(self.home, HOME_MLOPS_PLATFORM_DIR=str(self.platform))
        self.state = self.platform / "deploy"

    def deploy_args(self, app: str, run: str, port: int, bento: str = "bento", json_path: Path | None = None,
                    *extra: str) -> list[str]:
        out = json_path or self.root / f"{app}-{run[:6]}.json"
        return [CLI, "deploy", "--app", app, "--experiment-id", EXP, "--run-id", run,
                "--bento-image", self.images[bento], "--gateway-image", self.images["gateway"],
                "--port", str(port), "--memory", "256m", "--cpus", "0.5", "--ready-timeout", "60",
                "--json", str(out), *extra]

    def start(self, args: list[str], env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(args, env=env or self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        return run_cli(args, self.env, timeout=300, **kw)

    def api_deploy(self, app: str, run: str, port: int, bento: str = "bento") -> dp.DeployResult:
        release = dp.Release(app, EXP, run, f"m-{run[:6]}", self.images[bento], self.images["gateway"],
                             {"dataframe_records": [{"x": 1.0}]})
        return dp.deploy(release, dp.DeploySettings(port=port, ready_timeout=60, memory="256m", cpus=0.5),
                         state_base=self.state)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    from home_mlops.platform.host import docker_client

    client = docker_client(timeout=10)
    return Host(tmp_path_factory.mktemp("many-apps"), {**fx.build_standins(client), "client": client})


@pytest.fixture
def apps(host):
    """Names a test deploys under; every one is undeployed afterwards (and only those)."""
    names: list[str] = []
    yield names
    for name in names:
        dp.undeploy(name, state_base=host.state)
        assert dp._app_containers(host.images["client"], name) == []


# --------------------------------------------------------------------------- the sentinel


@pytest.fixture(scope="module", autouse=True)
def sentinel(host):
    """An app deployed before every other test here; the last test checks it was never touched."""
    app, run, port = app_name("sentinel"), run_id(), fx.free_test_port()
    res = host.api_deploy(app, run, port)
    ids = {c.id for c in dp._app_containers(host.images["client"], app)}
    yield {"app": app, "run": run, "port": port, "ids": ids, "result": res}
    dp.undeploy(app, state_base=host.state)


# --------------------------------------------------------------------------- tests


def test_two_apps_racing_on_their_own_ports(host, apps):
    client = host.images["client"]
    one, two = app_name("one"), app_name("two")
    apps += [one, two]
    p1 = fx.free_test_port()
    p2 = fx.free_test_port(exclude=frozenset({p1}))
    loads: list[fx.LoadLoop] = []
    try:
        for round_ in range(3):
            r1, r2 = run_id(), run_id()
            procs = [host.start(host.deploy_args(one, r1, p1)), host.start(host.deploy_args(two, r2, p2))]
            outcomes = [finish(p) for p in procs]
            assert [rc for rc, _ in outcomes] == [0, 0], [err[-2000:] for _, err in outcomes]
            assert (served_run(p1), served_run(p2)) == (r1, r2), f"round {round_}"
            assert_port_held_only_by(client, one, p1)
            assert_port_held_only_by(client, two, p2)
            if not loads:  # from the second round on, both apps serve while both redeploy
                loads = [fx.LoadLoop(p1, fresh=1, keepalive=1, max_seconds=120).start(),
                         fx.LoadLoop(p2, fresh=1, keepalive=1, max_seconds=120).start()]
                for load in loads:
                    load.wait_for(20)
    finally:
        for load in loads:
            load.stop()
    for load in loads:
        assert not load.failures, load.failures[:5]
        assert len(load.ok) > 50


def test_first_deploys_of_two_apps_on_one_port_never_both_pass(host, apps):
    client = host.images["client"]
    one, two = app_name("race-a"), app_name("race-b")
    apps += [one, two]
    port = fx.free_test_port()
    r1, r2 = run_id(), run_id()
    procs = {one: host.start(host.deploy_args(one, r1, port)), two: host.start(host.deploy_args(two, r2, port))}
    outcomes = {app: finish(p) for app, p in procs.items()}
    codes = sorted(rc for rc, _ in outcomes.values())
    assert codes == [0, 6], {a: err[-1500:] for a, (_, err) in outcomes.items()}
    winner = next(a for a, (rc, _) in outcomes.items() if rc == 0)
    loser = one if winner == two else two
    assert f"held by app {winner!r}" in outcomes[loser][1]
    assert dp._app_containers(client, loser) == [], "the loser leaves nothing behind"
    assert served_run(port) == (r1 if winner == one else r2)
    assert_port_held_only_by(client, winner, port)


def test_deploy_on_a_port_another_app_holds_exits_6_and_the_holder_keeps_serving(host, apps, sentinel):
    client = host.images["client"]
    app = app_name("third")
    apps.append(app)
    load = fx.LoadLoop(sentinel["port"], fresh=1, keepalive=1, max_seconds=60).start()
    try:
        load.wait_for(20)
        proc = host.run(host.deploy_args(app, run_id(), sentinel["port"])[1:])
        load.wait_for(len(load.ok) + 20)
    finally:
        load.stop()
    assert proc.returncode == 6, proc.stderr
    assert f"held by app {sentinel['app']!r} (run {sentinel['run']}" in proc.stderr
    assert "nothing was started" in proc.stderr and "Traceback" not in proc.stderr
    assert dp._app_containers(client, app) == []
    assert not load.failures and {r for _, r in load.ok} == {sentinel["run"]}


def test_front_door_on_all_addresses_private_parts_on_loopback(host, apps, monkeypatch):
    """The public gateway listens on 0.0.0.0; the model server and the candidate gateway on 127.0.0.1."""
    from urllib.parse import urlsplit

    client = host.images["client"]
    app = app_name("bind")
    apps.append(app)
    port = fx.free_test_port()
    seen: dict[str, set[str]] = {"candidate": set(), "bento": set()}
    real_smoke = dp.smoke

    def smoke_and_look(url, payload, containers, secrets_):
        # the candidate lives only for its smoke test: read the socket table right then
        seen["candidate"].update(listen_addresses(urlsplit(url).port))
        [bento] = dp._app_containers(client, app, role="bento")
        seen["bento"].update(listen_addresses(int(bento.labels[ds.LABEL_PORT])))
        return real_smoke(url, payload, containers, secrets_)

    monkeypatch.setattr(dp, "smoke", smoke_and_look)
    res = host.api_deploy(app, run_id(), port)
    assert seen["candidate"] == {"127.0.0.1"} and seen["bento"] == {"127.0.0.1"}, seen
    assert listen_addresses(port) == ["0.0.0.0"] and listen_addresses(res.bento_port) == ["127.0.0.1"]
    assert res.url.endswith(f":{port}") and "127.0.0.1" not in res.url and res.local_url == f"http://127.0.0.1:{port}"
    compose = (host.state / app / "docker-compose.yml").read_text()
    assert "HOME_MLOPS_GATEWAY_HOST: 0.0.0.0" in compose and "BENTOML_HOST: 127.0.0.1" in compose


def test_bind_loopback_and_a_foreign_loopback_listener(host, apps):
    """--bind 127.0.0.1 serves on loopback only; a foreign 127.0.0.1 listener blocks a 0.0.0.0 deploy."""
    import socket

    client = host.images["client"]
    app, other = app_name("lo"), app_name("lo-x")
    apps += [app, other]
    port = fx.free_test_port()
    out = host.root / f"{app}.json"
    proc = host.run(host.deploy_args(app, run_id(), port, "bento", out, "--bind", "127.0.0.1")[1:])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["url"] == result["local_url"] == f"http://127.0.0.1:{port}" and result["bind"] == "127.0.0.1"
    assert_port_held_only_by(client, app, port, bind="127.0.0.1")

    foreign = socket.socket()
    busy = fx.free_test_port(exclude=frozenset({port}))
    foreign.bind(("127.0.0.1", busy))
    foreign.listen(1)
    try:
        proc = host.run(host.deploy_args(other, run_id(), busy)[1:])
    finally:
        foreign.close()
    assert proc.returncode == 6 and f"port {busy} on 0.0.0.0 is in use" in proc.stderr, proc.stderr
    assert dp._app_containers(client, other) == []


def test_undeploy_and_status_through_the_cli(host, apps):
    client = host.images["client"]
    app = app_name("undeploy")
    apps.append(app)
    port = fx.free_test_port()
    run = run_id()
    assert host.run(host.deploy_args(app, run, port)[1:]).returncode == 0

    status_json = host.root / "status.json"
    proc = host.run(["status", "--app", app, "--json", str(status_json)])
    assert proc.returncode == 0, proc.stderr
    [row] = json.loads(status_json.read_text())["deployments"]
    for key in ("app", "url", "port", "run_id", "bento_image", "bento_digest", "gateway_image", "gateway_digest",
                "health", "ready", "deployed_at"):
        assert row[key] not in (None, ""), key
    assert row["run_id"] == run and row["port"] == port and row["ready"] is True
    assert row["bento_digest"].startswith("sha256:") and row["url"] == dp.public_url("0.0.0.0", port)
    # Without a terminal every line is '<time> [status] <text>' and a summary line follows the table.
    lines = [re.sub(r"^\S+ \[status\] ", "", text) for text in proc.stderr.splitlines()]
    start = next(i for i, text in enumerate(lines) if text.startswith("app "))
    header, line, bento_line, gateway_line = lines[start:start + 4]
    assert header.split() == ["app", "url", "port", "run", "model", "id", "health", "ready", "deployed", "at"]
    assert line.split() == [app, row["url"], str(port), run, "-", row["health"], "yes", row["deployed_at"]]
    assert bento_line.split() == ["bento", "image:", host.images["bento"], "@", row["bento_digest"]]
    assert gateway_line.split() == ["gateway", "image:", host.images["gateway"], "@", row["gateway_digest"]]

    out = host.root / "undeploy.json"
    proc = host.run(["undeploy", "--app", app, "--json", str(out)])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert len(result["removed"]) == 2 and all(app in n for n in result["removed"])
    assert dp._app_containers(client, app) == [] and listen_addresses(port) == []
    history = deploy_state.read_history(app, host.state)
    assert [h["event"] for h in history] == ["deployed", "undeployed"]
    assert deploy_state.active_entries(history) == []

    again = host.run(["undeploy", "--app", app, "--json", str(out)])
    assert again.returncode == 0 and json.loads(out.read_text())["removed"] == []
    assert "nothing of" in again.stderr
    bad = host.run(["undeploy", "--app", "[/x]", "--json", str(out)])
    assert bad.returncode == 2 and "[/x]" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_deploy_removes_the_new_containers_and_keeps_the_old_pair(host, apps, sig):
    client = host.images["client"]
    app = app_name("sig")
    apps.append(app)
    port = fx.free_test_port()
    first = host.api_deploy(app, run_id(), port)
    old_ids = {c.id for c in dp._app_containers(client, app)}
    new_run = run_id()
    out = host.root / f"{app}-sig.json"
    load = fx.LoadLoop(port, fresh=1, keepalive=1, max_seconds=90).start()
    try:
        load.wait_for(20)
        proc = host.start(host.deploy_args(app, new_run, port, "bento_never_ready", out))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not dp._app_containers(client, app, **{"run-id": new_run}):
            time.sleep(0.05)
        assert dp._app_containers(client, app, **{"run-id": new_run}), "the new model server never started"
        time.sleep(0.5)  # inside the readiness wait
        proc.send_signal(sig)
        rc, err = finish(proc)
        load.wait_for(len(load.ok) + 20)
    finally:
        load.stop()
    assert rc == 6, err[-3000:]
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err
    assert json.loads(out.read_text())["exit_code"] == 6
    assert {c.id for c in dp._app_containers(client, app)} == old_ids
    assert not load.failures and {r for _, r in load.ok} == {first.run_id}
    assert served_run(port) == first.run_id
    assert [h["run_id"] for h in deploy_state.read_history(app, host.state)] == [first.run_id]


@pytest.fixture
def deploy_user():
    """A throwaway user in the docker group (removed afterwards)."""
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    name = f"hmtb{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--groups", "docker", name],
                   check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def test_deploy_as_a_non_root_user_sharing_state_with_root(host, apps, deploy_user):
    """root deploys, then a docker-group user redeploys the same app with the same lock files and
    history (as root and the jenkins user do), then root undeploys."""
    client = host.images["client"]
    app = app_name("user")
    apps.append(app)
    port = fx.free_test_port()
    shared = Path(tempfile.mkdtemp(prefix="hmt-b-user-"))  # not under pytest's 0700 tmp folder
    try:
        os.chmod(shared, 0o755)
        platform = shared / "platform"
        state = platform / "deploy"
        home = shared / "home"
        home.mkdir()
        os.chown(home, int(subprocess.check_output(["id", "-u", deploy_user])), -1)
        release = dp.Release(app, EXP, run_id(), "m-1", host.images["bento"], host.images["gateway"])
        first = dp.deploy(release, dp.DeploySettings(port=port, ready_timeout=60), state_base=state)

        second = run_id()
        out = home / "deploy.json"
        env = {**cli_env(home, HOME_MLOPS_PLATFORM_DIR=str(platform)), "HOME": str(home)}
        args = host.deploy_args(app, second, port, "bento", out)
        # The venv's python lives under /root (mode 0700): the user may search it (CAP_DAC_READ_SEARCH,
        # nothing else); Docker is reached through the docker group, state files through their modes.
        proc = subprocess.run(["setpriv", f"--reuid={deploy_user}", f"--regid={deploy_user}", "--init-groups",
                               "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--", *args],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(out.read_text())
        assert result["previous_run_id"] == first.run_id and served_run(port) == second
        assert_port_held_only_by(client, app, port)
        assert [h["run_id"] for h in deploy_state.read_history(app, state)] == [first.run_id, second]
        assert (state / f"{app}.json").stat().st_mode & 0o060 == 0o060, "history group-writable for the next user"
    finally:
        dp.undeploy(app, state_base=shared / "platform" / "deploy")
        subprocess.run(["rm", "-rf", "--", str(shared)], check=False)


def test_zz_sentinel_still_serves_untouched(host, sentinel):
    """Runs last in this module: every deploy, race and undeploy above left the sentinel alone."""
    client = host.images["client"]
    assert served_run(sentinel["port"]) == sentinel["run"]
    assert {c.id for c in dp._app_containers(client, sentinel["app"])} == sentinel["ids"]
    assert all(c.status == "running" for c in dp._app_containers(client, sentinel["app"]))
    assert_port_held_only_by(client, sentinel["app"], sentinel["port"])


def test_host_lock_is_one_per_host_whatever_the_platform_folder(tmp_path):
    """root (/var/lib/home-mlops) and a jenkins user (~/.local/share/...) have different platform
    folders; the lock that guards the host's ports must still be the same one for both."""
    assert deploy_state.host_lock_path(tmp_path / "root") == deploy_state.host_lock_path(tmp_path / "jenkins")
    other = (
        "import sys; from pathlib import Path; from home_mlops.deploy import state as s\n"
        "from home_mlops.errors import DeployFailed\n"
        "try:\n"
        "    with s.host_lock('second deployer', 0.5, Path(sys.argv[1])): print('acquired')\n"
        "except DeployFailed as exc: print('busy:', exc)\n"
    )
    with deploy_state.host_lock("hmt-b-holder: switching", 30, tmp_path / "root"):
        proc = subprocess.run([sys.executable, "-c", other, str(tmp_path / "jenkins")],
                              capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("busy:") and "hmt-b-holder" in proc.stdout, proc.stdout + proc.stderr
