"""The dockerized Jenkins (docker/jenkins/).

Static and stand-in tests that run anywhere: passwords reach Jenkins through files
(JCasC readFile on a read-only secrets volume), never through the container's
environment; start.sh runs for real against a recording stand-in `docker`, and its
secret writer runs against the real Docker Engine with a stand-in image.

The pipeline in a real Jenkins (-m jenkins, and `make test`): uses the Jenkins at
HOME_MLOPS_JENKINS_URL (+ HOME_MLOPS_JENKINS_USER/TOKEN) when set; otherwise builds and
starts docker/jenkins/ as container hmt-j1-jenkins on 127.0.0.1:19400 (start.sh), which
needs the Jenkins image, the platform's base image and the plugin folder. Skips, naming
exactly what is missing and how to provide it, when neither is possible. Then: an HTTP
MLflow tracking server (127.0.0.1:19401), an example trained into it, the jobs
registered with JJB for a test app (hmt-j1-iris, port 19402), and three builds through
`home-mlops jenkins build`: one that succeeds (stages ran, /predict answers, build
description and archived JSON, no password in the console), one with an unknown RUN_ID
(exit 3, the running deployment untouched) and one aborted (non-zero, still untouched).
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
import zipfile
from pathlib import Path

import pytest
import yaml

from home_mlops.jenkins import plugins as jenkins_plugins

REPO = Path(__file__).resolve().parents[2]
JENKINS_DIR = REPO / "docker" / "jenkins"
DOCKERFILE = JENKINS_DIR / "Dockerfile"
CASC = JENKINS_DIR / "casc.yaml"
START = JENKINS_DIR / "start.sh"
SECRETS_DIR = "/run/secrets/home-mlops"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN", re.I)
ENV_NAMES = ("HOME_MLOPS_JENKINS_URL", "HOME_MLOPS_JENKINS_USER", "HOME_MLOPS_JENKINS_TOKEN")
# the test's own names and ports (range 19400-19499): nothing a user runs is touched
CONTAINER = "hmt-j1-jenkins"
JENKINS_PORT, MLFLOW_PORT, APP_PORT = 19400, 19401, 19402
APP, EXAMPLE = "hmt-j1-iris", "tabular-iris-multi-classifier"
IRIS_ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}


def _dockerfile_arg(name: str) -> str:
    return re.search(rf"^ARG {name}=(\S+)", DOCKERFILE.read_text(), re.M).group(1)


def base_image() -> str:
    return f"jenkins/jenkins:{_dockerfile_arg('JENKINS_VERSION')}-jdk17"


def _image_present(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True, timeout=30).returncode == 0


def _how() -> tuple[str | None, str]:
    """('external' | 'docker' | None, what is missing and how to provide it)."""
    if all(os.environ.get(n) for n in ENV_NAMES):
        return "external", ""
    external = f"or point {', '.join(ENV_NAMES)} at a running Jenkins with the plugins of docker/jenkins/plugins.txt"
    if shutil.which("docker") is None:
        return None, f"no Jenkins: no docker CLI to build docker/jenkins ({external})"
    try:
        if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
            return None, f"no Jenkins: the Docker daemon does not answer ({external})"
        missing = []
        if not _image_present(base_image()):
            missing.append(f"the Jenkins image {base_image()} (docker pull {base_image()} where a registry is "
                           "reachable, or docker load -i jenkins.tar)")
        if not _image_present(_dockerfile_arg("BASE_IMAGE")):
            missing.append(f"the base image {_dockerfile_arg('BASE_IMAGE')} (home-mlops platform up)")
    except (OSError, subprocess.TimeoutExpired):
        return None, f"no Jenkins: the Docker daemon does not answer ({external})"
    problems = jenkins_plugins.problems(JENKINS_DIR / "plugins.txt", JENKINS_DIR / "plugins")
    if problems:
        missing.append(f"the plugin folder docker/jenkins/plugins/ ({problems[0]}; fill it with "
                       "scripts/jenkins-plugins.sh where the Jenkins update center is reachable)")
    if missing:
        return None, "no Jenkins to run the pipeline in: missing " + "; ".join(missing) + f"; {external}"
    return "docker", ""


HOW, REASON = _how()


def home_mlops(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("home-mlops")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout)


def _wait_http(url: str, seconds: float) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer in {seconds} s"
        time.sleep(1)


@pytest.fixture(scope="module")
def http_tracking(tmp_path_factory):
    """`home-mlops mlflow-server` on 127.0.0.1:19401 (sqlite store, proxied artifacts), with
    the example trained into it over HTTP: what a Jenkins agent reaches, unlike a sqlite path."""
    from conftest import cli_env, stop_process_group

    root = tmp_path_factory.mktemp("hmt-j1-mlflow")
    exe = Path(sys.executable).with_name("home-mlops")
    server = subprocess.Popen(
        [str(exe), "mlflow-server", "--host", "127.0.0.1", "--port", str(MLFLOW_PORT),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{MLFLOW_PORT}"
        _wait_http(f"{uri}/health", 120)
        env = cli_env(root / "state", MLFLOW_TRACKING_URI=uri)
        proc = subprocess.run([sys.executable, str(REPO / "training" / EXAMPLE / "train.py")], env=env,
                              capture_output=True, text=True, timeout=900, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        ids = dict(re.findall(r"^(EXPERIMENT_ID|RUN_ID)=(\S+)$", proc.stdout, re.M))
        yield {"uri": uri, "experiment_id": ids["EXPERIMENT_ID"], "run_id": ids["RUN_ID"]}
    finally:
        stop_process_group(server, 30)


@pytest.fixture(scope="module")
def jenkins_env(tmp_path_factory, http_tracking, local_platform):
    """HOME_MLOPS_JENKINS_* of the Jenkins to use: the external one, or hmt-j1-jenkins started
    by start.sh (stopped and its volumes removed afterwards)."""
    env = dict(os.environ)
    if HOW == "external":
        yield env
        return
    state = tmp_path_factory.mktemp("hmt-j1-jenkins")
    start_env = dict(os.environ, HOME_MLOPS_HOME=str(state), HOME_MLOPS_JENKINS_NAME=CONTAINER,
                     HOME_MLOPS_JENKINS_PORT=str(JENKINS_PORT), REGISTRY_USER=local_platform.user,
                     REGISTRY_PASSWORD=local_platform.password, MLFLOW_TRACKING_URI=http_tracking["uri"],
                     HOME_MLOPS_TRUSTED_REGISTRIES=local_platform.registry.split("/")[0])
    try:
        proc = subprocess.run(["bash", str(START)], env=start_env, capture_output=True, text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        for line in (state / "jenkins" / "jenkins.env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
        env["HMT_J1_ADMIN_PASSWORD"] = (state / "jenkins" / "admin-password").read_text()
        yield env
    finally:
        subprocess.run(["bash", str(START), "stop"], env=dict(os.environ, HOME_MLOPS_JENKINS_NAME=CONTAINER),
                       capture_output=True, timeout=120)
        subprocess.run(["docker", "volume", "rm", "-f", f"{CONTAINER}-home", f"{CONTAINER}-secrets"],
                       capture_output=True, timeout=120)


def _test_jobs(tmp_path: Path, tracking_uri: str) -> Path:
    """jobs/ with one app of the test's own: hmt-j1-iris on port 19402, whose builds read the
    test's tracking server (so an external Jenkins needs no global setting for it)."""
    jobs = tmp_path / "jobs"
    shutil.copytree(REPO / "jobs", jobs)
    projects = yaml.safe_load((jobs / "projects.yaml").read_text())
    projects[0]["project"]["app"] = [{APP: {"port": APP_PORT}}]
    (jobs / "projects.yaml").write_text(yaml.safe_dump(projects, sort_keys=False))
    templates = (jobs / "templates.yaml").read_text()
    line = "            HOME_MLOPS_SERVING={serving}\n"
    assert templates.count(line) == 1
    (jobs / "templates.yaml").write_text(templates.replace(line, line + f"            MLFLOW_TRACKING_URI={tracking_uri}\n"))
    return jobs


def _predict() -> int:
    import httpx

    try:
        resp = httpx.post(f"http://127.0.0.1:{APP_PORT}/predict", json={"dataframe_records": [IRIS_ROW]}, timeout=30)
    except httpx.HTTPError:
        return 0
    return resp.status_code if resp.status_code != 200 or len(resp.json()["predictions"]) == 1 else -1


def _jenkins_client(env):
    import jenkins

    return jenkins.Jenkins(env["HOME_MLOPS_JENKINS_URL"], username=env["HOME_MLOPS_JENKINS_USER"],
                           password=env["HOME_MLOPS_JENKINS_TOKEN"], timeout=60)


@pytest.mark.jenkins
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(HOW is None, reason=REASON)
def test_pipeline_in_a_real_jenkins(tmp_path, http_tracking, jenkins_env, local_platform):
    import requests

    env, job = jenkins_env, f"home-mlops/{APP}"
    jobs = _test_jobs(tmp_path, http_tracking["uri"])
    build_args = ["jenkins", "build", "--app", APP, "--experiment-id", http_tracking["experiment_id"],
                  "--registry", local_platform.registry]
    secrets = [local_platform.password] + ([env["HMT_J1_ADMIN_PASSWORD"]] if env.get("HMT_J1_ADMIN_PASSWORD") else [])
    client = _jenkins_client(env)
    proc = home_mlops("jenkins", "register", "--jobs", str(jobs), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    try:
        # 1. success: the stages ran, /predict answers, description and archived JSON
        proc = home_mlops(*build_args, "--run-id", http_tracking["run_id"], env=env, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-6000:]
        assert re.search(rf"ok {re.escape(job)} #\d+ SUCCESS", proc.stderr)
        for stage in ("Build bento", "Build gateway", "Deploy"):
            assert f"[Pipeline] {{ ({stage})" in proc.stderr, stage  # followed live from the console
        number = int(re.search(rf"{re.escape(job)} #(\d+) SUCCESS", proc.stderr).group(1))
        info = client.get_build_info(job, number)
        assert re.search(r"^deploy: http://\S+:%d" % APP_PORT, info["description"], re.M), info["description"]
        archived = {a["fileName"] for a in info["artifacts"]}
        assert {"home-mlops-bento.json", "home-mlops-gateway.json", "home-mlops-deploy.json"} <= archived
        deploy = json.loads(client.jenkins_open(requests.Request("GET", f"{info['url']}artifact/home-mlops-deploy.json")))
        assert deploy["ok"] is True and deploy["run_id"] == http_tracking["run_id"]
        console = client.get_build_console_output(job, number)
        assert not [s for s in secrets if s and s in console], "a password is in the console log"
        assert _predict() == 200
        status = home_mlops("jenkins", "status", "--jobs", str(jobs), env=env, timeout=120)
        assert status.returncode == 0 and re.search(rf"^{APP}\s+#{number}\s+SUCCESS", status.stdout, re.M)

        # 2. an unknown RUN_ID: the CLI's not-found exit code, the deployment keeps serving
        proc = home_mlops(*build_args, "--run-id", os.urandom(16).hex(), env=env, timeout=1800)
        assert proc.returncode == 3, proc.stderr[-4000:]
        assert "finished FAILURE" in proc.stderr and "Traceback" not in proc.stderr
        assert _predict() == 200

        # 3. aborted while building: non-zero, the deployment keeps serving
        running = subprocess.Popen([str(Path(sys.executable).with_name("home-mlops")), *build_args,
                                    "--run-id", http_tracking["run_id"]], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while True:
            last = (client.get_job_info(job).get("lastBuild") or {}).get("number", 0)
            if last > number + 1 and "(Build bento)" in client.get_build_console_output(job, last):
                break
            assert time.monotonic() < deadline and running.poll() is None, "the third build did not start"
            time.sleep(2)
        client.stop_build(job, last)
        _, err = running.communicate(timeout=600)
        assert running.returncode != 0 and "finished ABORTED" in err, err[-4000:]
        assert client.get_build_info(job, last)["result"] == "ABORTED"
        assert _predict() == 200
        for n in (number + 1, last):
            console = client.get_build_console_output(job, n)
            assert not [s for s in secrets if s and s in console], f"a password is in build #{n}'s console"
    finally:
        home_mlops("jenkins", "undeploy", "--app", APP, env=env, timeout=900)


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
record = {"argv": args, "env_secrets": [s for s in secrets if any(s in v for v in os.environ.values())],
          "ref": os.environ.get("HOME_MLOPS_REF"), "git_url": os.environ.get("HOME_MLOPS_GIT_URL")}
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
    env.update(_plugin_and_wheel_folders(tmp_path))
    proc = subprocess.run(["bash", str(START)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 7, proc.stderr[-3000:]
    assert "did not become ready" in proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    for call in calls:
        assert admin not in " ".join(call["argv"]) and registry_password not in " ".join(call["argv"]), call["argv"]
        assert call["env_secrets"] == [], call["argv"]  # start.sh unset them before calling docker
    writes = {call["argv"][-1]: call["stdin"] for call in calls if call["argv"][:1] == ["run"] and "-i" in call["argv"]}
    assert writes == {"admin-password": admin, "registry-user": "hmt-d-user", "registry-password": registry_password}
    run_d = next(call for call in calls if call["argv"][:2] == ["run", "-d"])
    started = run_d["argv"]
    assert f"home-mlops-jenkins-secrets:{SECRETS_DIR}:ro" in started
    # the library version and repository reach JCasC from jobs/defaults.yaml (the one ref)
    assert "HOME_MLOPS_REF" in started and (run_d["ref"], run_d["git_url"]) == ("main", "file:///srv/home-mlops")
    # the image was built (no image with the inputs' label yet), labelled with the inputs' digest
    (built,) = [call["argv"] for call in calls if call["argv"][:1] == ["build"]]
    assert re.fullmatch(r"io\.home-mlops\.jenkins\.inputs=[0-9a-f]{64}", built[built.index("--label") + 1])
    passed = [started[i + 1].split("=", 1)[0] for i, a in enumerate(started) if a == "-e"]
    assert passed and not [n for n in passed if SECRET_NAME.search(n)], passed
    kept = tmp_path / "state" / "jenkins" / "admin-password"
    assert kept.read_text() == admin and (kept.stat().st_mode & 0o777) == 0o600
    assert admin not in proc.stdout + proc.stderr and registry_password not in proc.stdout + proc.stderr


def _plugin_and_wheel_folders(tmp_path: Path) -> dict[str, str]:
    """A plugin folder that satisfies plugins.txt (stand-in archives with the pinned versions)
    and a wheel folder, so start.sh gets past its checks without the update center or pip."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name, version in jenkins_plugins.pinned(JENKINS_DIR / "plugins.txt").items():
        with zipfile.ZipFile(plugins / f"{name}.jpi", "w") as archive:
            archive.writestr("META-INF/MANIFEST.MF", f"Short-Name: {name}\nPlugin-Version: {version}\n\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "home_mlops-0.1.0-py3-none-any.whl").write_bytes(b"stand-in")
    return {"HOME_MLOPS_JENKINS_PLUGINS": str(plugins), "HOME_MLOPS_JENKINS_WHEELS": str(wheels)}


@pytest.mark.skipif(not Path("/var/run/docker.sock").exists(), reason="start.sh reads the docker socket's group")
def test_start_sh_stops_before_any_build_without_the_plugin_folder(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(FAKE_DOCKER.replace("PYTHON", sys.executable, 1))
    (fake / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    empty = tmp_path / "no-plugins"
    empty.mkdir()
    env = {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "HOME_MLOPS_HOME": str(tmp_path / "state"), "HOME_MLOPS_PYTHON": sys.executable,
           "HOME_MLOPS_JENKINS_PLUGINS": str(empty), "HMT_D_LOG": str(log)}
    proc = subprocess.run(["bash", str(START)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "scripts/jenkins-plugins.sh" in proc.stderr and "holds no plugin archive" in proc.stderr
    calls = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    assert not [c for c in calls if c[:1] in (["build"], ["run"])], calls


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
