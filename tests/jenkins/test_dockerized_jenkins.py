"""The dockerized Jenkins (docker/jenkins/).

Static and stand-in tests that run anywhere: passwords reach Jenkins through files
(JCasC readFile on a read-only secrets volume), never through the container's
environment; start.sh runs for real against a recording stand-in `docker`, and its
secret writer runs against the real Docker Engine with a stand-in image.

Opt-in (-m jenkins): a real Jenkins runs the real job end to end. Uses the Jenkins at HOME_MLOPS_JENKINS_URL (+ HOME_MLOPS_JENKINS_USER/TOKEN) when
set; otherwise builds and starts docker/jenkins/ (start.sh), which needs the
base image jenkins/jenkins:<version>-jdk17 present locally. Skips, naming what
is missing, when neither is possible. Then: register the jobs with JJB, trigger
one app's job with `home-mlops jenkins build`, assert SUCCESS and /predict.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
JENKINS_DIR = REPO / "docker" / "jenkins"
DOCKERFILE = JENKINS_DIR / "Dockerfile"
CASC = JENKINS_DIR / "casc.yaml"
START = JENKINS_DIR / "start.sh"
SECRETS_DIR = "/run/secrets/home-mlops"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN", re.I)
APP = "tabular-iris-multi-classifier"
ENV_NAMES = ("HOME_MLOPS_JENKINS_URL", "HOME_MLOPS_JENKINS_USER", "HOME_MLOPS_JENKINS_TOKEN")


def base_image() -> str:
    version = re.search(r"^ARG JENKINS_VERSION=(\S+)", DOCKERFILE.read_text(), re.M).group(1)
    return f"jenkins/jenkins:{version}-jdk17"


def _how() -> tuple[str | None, str]:
    """('external' | 'docker' | None, reason)."""
    if all(os.environ.get(n) for n in ENV_NAMES):
        return "external", ""
    missing_env = [n for n in ENV_NAMES if not os.environ.get(n)]
    if shutil.which("docker") is None:
        return None, f"no Jenkins: {', '.join(missing_env)} not set, and no docker CLI to build docker/jenkins"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
        present = info.returncode == 0 and subprocess.run(
            ["docker", "image", "inspect", base_image()], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return None, f"no Jenkins: {', '.join(missing_env)} not set, and the Docker daemon does not answer"
    if info.returncode != 0:
        return None, f"no Jenkins: {', '.join(missing_env)} not set, and the Docker daemon does not answer"
    if not present:
        return None, (f"no Jenkins: {', '.join(missing_env)} not set, and the image {base_image()} "
                      "is not present locally (docker load it to run docker/jenkins)")
    return "docker", ""


HOW, REASON = _how()


def home_mlops(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("home-mlops")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.jenkins
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(HOW is None, reason=REASON)
def test_job_builds_and_serves(tmp_path, trained_run, local_platform):
    import httpx

    run = trained_run(APP)
    if not str(run.tracking_uri).startswith("http"):
        pytest.skip(f"trained_run's tracking URI {run.tracking_uri!r} is not an HTTP server a Jenkins agent can reach")
    env = dict(os.environ)
    if HOW == "docker":  # start.sh gets the registry credentials and the tracking URI
        state = tmp_path / "state"
        start_env = dict(os.environ, HOME_MLOPS_HOME=str(state), REGISTRY_USER=local_platform.user,
                         REGISTRY_PASSWORD=local_platform.password, MLFLOW_TRACKING_URI=str(run.tracking_uri))
        proc = subprocess.run(["bash", str(REPO / "docker/jenkins/start.sh")], env=start_env,
                              capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        for line in (state / "jenkins" / "jenkins.env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
    proc = home_mlops("jenkins", "register", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = home_mlops("jenkins", "build", "--app", APP, "--experiment-id", str(run.experiment_id),
                      "--run-id", str(run.run_id), "--registry", local_platform.registry, env=env, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert f"{APP} #" in proc.stderr and "SUCCESS" in proc.stderr
    assert "[Pipeline] stage" in proc.stderr  # the console was followed
    status = home_mlops("jenkins", "status", env=env, timeout=120)
    assert status.returncode == 0 and re.search(rf"^{APP}\s+#\d+\s+SUCCESS", status.stdout, re.M), status.stdout
    deadline = time.monotonic() + 60
    while True:
        try:
            resp = httpx.post("http://127.0.0.1:8000/predict", json={"dataframe_records": [
                {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
                 "petal length (cm)": 1.4, "petal width (cm)": 0.2}]}, timeout=30)
            if resp.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "/predict did not answer after the Jenkins build"
        time.sleep(1)
    assert len(resp.json()["predictions"]) == 1


# --------------------------------------------------------------------------- secrets by file (run anywhere)


def _joined_lines(path: Path) -> list[str]:
    """Lines with backslash continuations joined (Dockerfile and shell)."""
    return re.sub(r"\\\n\s*", " ", path.read_text()).splitlines()


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, str(index)))
    else:
        yield path, node


def _read_file_ref(name: str) -> str:
    return "${readFile:%s/%s}" % (SECRETS_DIR, name)


def test_casc_reads_every_password_from_a_secret_file():
    casc = yaml.safe_load(CASC.read_text())
    admin = casc["jenkins"]["securityRealm"]["local"]["users"][0]
    assert admin["password"] == _read_file_ref("admin-password")
    creds = [c["usernamePassword"] for c in casc["credentials"]["system"]["domainCredentials"][0]["credentials"]]
    registry = next(c for c in creds if c["id"] == "home-mlops-registry")
    assert registry["username"] == _read_file_ref("registry-user")
    assert registry["password"] == _read_file_ref("registry-password")
    secret_leaves = [(p, v) for p, v in _leaves(casc) if SECRET_NAME.search(p[-1])]
    assert secret_leaves and all(
        re.fullmatch(r"\$\{readFile:%s/[a-z-]+\}" % re.escape(SECRETS_DIR), str(v)) for _, v in secret_leaves
    ), secret_leaves
    # no secret is looked up from the environment (${REGISTRY_PASSWORD}, ${JENKINS_ADMIN_PASSWORD:-x}, ...)
    env_refs = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", CASC.read_text())
    assert not [name for name in env_refs if SECRET_NAME.search(name)], env_refs


def test_dockerfile_defines_no_secret_and_owns_the_secrets_mount():
    defined = []
    for line in _joined_lines(DOCKERFILE):
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "ENV":
            defined += [token.split("=", 1)[0] for token in shlex.split(rest)]
        elif word.upper() == "ARG":
            defined.append(rest.split("=", 1)[0].strip())
    assert "PATH" in defined and "JENKINS_VERSION" in defined  # the parser sees the file's ENV and ARG
    # a *_FILE variable names a path (the API token file), not a secret
    assert not [n for n in defined if SECRET_NAME.search(n) and not n.endswith("_FILE")], defined
    lines = DOCKERFILE.read_text().splitlines()
    mount = next(i for i, line in enumerate(lines) if SECRETS_DIR in line and line.startswith("RUN install -d"))
    assert "-o jenkins" in lines[mount] and "-m 0700" in lines[mount]
    assert mount < lines.index("USER jenkins")


def _docker_run_d(lines: list[str]) -> str:
    return next(line for line in lines if re.match(r"\s*docker run -d\b", line))


def test_start_sh_passes_no_secret_as_environment():
    lines = _joined_lines(START)
    run = _docker_run_d(lines)
    passed = re.findall(r"-e\s+\"?([A-Za-z_][A-Za-z0-9_]*)", run)
    assert "JENKINS_ADMIN_ID" in passed and "MLFLOW_TRACKING_URI" in passed
    assert not [n for n in passed if SECRET_NAME.search(n)], passed
    assert '-v "$secrets_volume:$secrets_dir:ro"' in run
    assert f"secrets_dir={SECRETS_DIR}" in lines
    # (exports inside a heredoc are text written to a file, not this shell's environment)
    script = re.sub(r"<<'?(\w+)'?\n.*?^\1$", "", START.read_text(), flags=re.M | re.S)
    exported = [line for line in script.splitlines() if re.match(r"\s*export\b", line)]
    assert exported and not [line for line in exported if SECRET_NAME.search(line)], exported
    assert subprocess.run(["bash", "-n", str(START)]).returncode == 0


FAKE_DOCKER = r'''#!PYTHON
"""Stand-in docker CLI: records argv, stdin of `run -i` and which secrets its environment holds."""
import json, os, sys
args = sys.argv[1:]
secrets = json.loads(os.environ.get("HMT_D_SECRETS_JSON_PATH") and open(os.environ["HMT_D_SECRETS_JSON_PATH"]).read() or "[]")
record = {"argv": args, "env_secrets": [s for s in secrets if any(s in v for v in os.environ.values())]}
if args[:1] == ["run"] and "-i" in args:
    record["stdin"] = sys.stdin.read()
with open(os.environ["HMT_D_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")
if args[:2] == ["run", "-d"]:
    print("0123456789ab")
'''


@pytest.mark.skipif(not Path("/var/run/docker.sock").exists(), reason="start.sh reads the docker socket's group")
def test_start_sh_sends_passwords_only_on_stdin_into_the_secrets_volume(tmp_path):
    """start.sh for real (bash), with a recording stand-in `docker` first on PATH; Jenkins
    itself never answers (nothing listens on its port), so it stops at the wait with exit 7."""
    admin, registry_password = "hmt-d-admin-" + os.urandom(8).hex(), "hmt-d-reg-" + os.urandom(8).hex()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(FAKE_DOCKER.replace("PYTHON", sys.executable, 1))
    (fake / "docker").chmod(0o755)
    secrets_json = tmp_path / "secrets.json"  # the fake reads what to look for from a file, not its env
    secrets_json.write_text(json.dumps([admin, registry_password]))
    log = tmp_path / "docker.log"
    with socket.socket() as sock:  # a loopback port in our range with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
        "HOME_MLOPS_HOME": str(tmp_path / "state"), "HOME_MLOPS_PYTHON": sys.executable,
        "HOME_MLOPS_JENKINS_PORT": str(port), "HOME_MLOPS_JENKINS_WAIT": "1",
        "JENKINS_ADMIN_PASSWORD": admin, "REGISTRY_USER": "hmt-d-user", "REGISTRY_PASSWORD": registry_password,
        "HMT_D_LOG": str(log), "HMT_D_SECRETS_JSON_PATH": str(secrets_json),
    }
    proc = subprocess.run(["bash", str(START)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 7, proc.stderr[-3000:]
    assert "did not become ready" in proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    for call in calls:
        assert admin not in " ".join(call["argv"]) and registry_password not in " ".join(call["argv"]), call["argv"]
        assert call["env_secrets"] == [], call["argv"]  # start.sh unset them before calling docker
    writes = {call["argv"][-1]: call["stdin"] for call in calls if call["argv"][:1] == ["run"] and "-i" in call["argv"]}
    assert writes == {"admin-password": admin, "registry-user": "hmt-d-user", "registry-password": registry_password}
    started = next(call["argv"] for call in calls if call["argv"][:2] == ["run", "-d"])
    assert f"home-mlops-jenkins-secrets:{SECRETS_DIR}:ro" in started
    passed = [started[i + 1].split("=", 1)[0] for i, a in enumerate(started) if a == "-e"]
    assert passed and not [n for n in passed if SECRET_NAME.search(n)], passed
    kept = tmp_path / "state" / "jenkins" / "admin-password"
    assert kept.read_text() == admin and (kept.stat().st_mode & 0o777) == 0o600
    assert admin not in proc.stdout + proc.stderr and registry_password not in proc.stdout + proc.stderr


def _start_sh_function(name: str) -> str:
    text = START.read_text()
    match = re.search(rf"^{name}\(\) {{\n.*?^}}\n", text, re.M | re.S)
    assert match, f"start.sh has no function {name}"
    return match.group(0)


@pytest.mark.docker
def test_put_secret_writes_a_file_only_jenkins_reads(tmp_path):
    """start.sh's put_secret against the real Docker Engine, with a stand-in image that has
    the jenkins user and the Dockerfile's own RUN line for the secrets mount point."""
    from conftest import docker_reason

    if docker_reason():
        pytest.skip(docker_reason())
    import docker

    from home_mlops.platform.host import BASE_IMAGE

    client = docker.from_env()
    mount_line = next(line for line in DOCKERFILE.read_text().splitlines()
                      if line.startswith("RUN install -d") and SECRETS_DIR in line)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nRUN useradd --uid 1000 --create-home jenkins\n{mount_line}\nUSER jenkins\n")
    image, volume = f"hmt-d/jenkins-secrets-standin:{os.getpid()}", f"hmt-d-secrets-{os.urandom(4).hex()}"
    client.images.build(path=str(context), tag=image, network_mode="host", rm=True)
    secret = "hmt-d-" + os.urandom(12).hex()
    try:
        script = (f"image={shlex.quote(image)} secrets_volume={volume} secrets_dir={SECRETS_DIR}\n"
                  + _start_sh_function("put_secret") + "put_secret registry-password\n")
        proc = subprocess.run(["bash", "-c", script], input=secret, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        def output(command: str, **kw) -> str:
            container = client.containers.run(image, ["/bin/sh", "-c", command], detach=True, network_mode="none",
                                              volumes={volume: {"bind": SECRETS_DIR, "mode": "ro"}}, **kw)
            try:
                container.wait(timeout=60)
                return container.logs(stdout=True, stderr=True).decode()
            finally:
                container.remove(force=True)

        path = f"{SECRETS_DIR}/registry-password"
        assert output(f"stat -c '%a %U' {path}; cat {path}") == f"600 jenkins\n{secret}"
        other = output(f"cat {path} || echo refused", user="4242")  # any other user of the image
        assert secret not in other and "refused" in other
    finally:
        client.volumes.get(volume).remove(force=True) if any(v.name == volume for v in client.volumes.list()) else None
        client.images.remove(image, force=True)


def test_platform_daemons_inherit_no_secret(monkeypatch, tmp_path):
    """dockerd and the registry outlive the command that starts them: whatever secrets that
    command had (a bound REGISTRY_PASSWORD, Jenkins' variables) must not live on in them.
    Unit test of the wiring (starting a second dockerd here is not allowed)."""
    from types import SimpleNamespace

    from home_mlops.platform import host as platform

    secrets = {"REGISTRY_PASSWORD": "hmt-d-reg", "JENKINS_ADMIN_PASSWORD": "hmt-d-admin", "MY_API_TOKEN": "hmt-d-tok"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME_MLOPS_PLATFORM_DIR", str(tmp_path))
    started: list[tuple[list[str], dict]] = []

    def record(argv, **kw):
        started.append((argv, kw.get("env")))
        return SimpleNamespace(pid=0, stdout="home-mlops:$2y$hash\n")

    answers = iter([False, True])
    monkeypatch.setattr(platform, "_docker_up", lambda: next(answers))
    monkeypatch.setattr(platform, "_registry_answers", lambda: next(answers))
    monkeypatch.setattr(platform.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(platform.subprocess, "Popen", record)
    monkeypatch.setattr(platform.subprocess, "run", record)
    platform.ensure_dockerd()
    answers = iter([False, True])
    platform.ensure_registry()
    assert [argv[0] for argv, _ in started] == ["/usr/bin/dockerd", "htpasswd", "/usr/bin/docker-registry"]
    for argv, env in started:
        assert env is not None and env.get("PATH") == os.environ["PATH"], argv
        assert not set(secrets) & set(env), argv
