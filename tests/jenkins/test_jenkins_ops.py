"""`home-mlops jenkins ...` against a real local HTTP server that answers the Jenkins
REST endpoints python-jenkins and Jenkins Job Builder call (no mocks of either), with
the jobs in the home-mlops folder and the console served with Jenkins' progressive-text
protocol (X-Text-Size, X-More-Data)."""
from __future__ import annotations

import base64
import json
import sys
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from typer.testing import CliRunner

from home_mlops.jenkins import follow
from home_mlops.jenkins.client import JenkinsConfig
from home_mlops.cli.jenkins import jenkins_app

REPO = Path(__file__).resolve().parents[2]
USER, TOKEN = "admin", "11aa22bb33cc44dd55ee66ff77889900"
APP = "tabular-iris-xgboost"
FOLDER = "home-mlops"
JOB = f"{FOLDER}/{APP}"
RUN_ID = "0123456789abcdef0123456789abcdef"
APPS = ["tabular-iris-multi-classifier", "tabular-iris-lightgbm", "tabular-iris-xgboost",
        "tabular-iris-pytorch", "tabular-diabetes-regressor"]


class FakeJenkins:
    """What the fake Jenkins holds: jobs and views by full name (folder/name), builds, queue."""

    def __init__(self) -> None:
        self.jobs: dict[str, str] = {}
        self.views: dict[str, str] = {}
        self.builds: dict[tuple[str, int], dict] = {}
        self.queue: dict[int, dict] = {}
        self.triggered: list[tuple[str, dict]] = []
        self.requests: list[tuple[str, str]] = []
        self.result = "SUCCESS"
        self.console = ["Started by user admin\n", "[Pipeline] stage (Build bento)\n", "Finished: SUCCESS\n"]
        self.artifacts: dict[str, bytes] = {}  # relativePath -> content, archived by every build
        self.gate = None  # callable(chunk_index) run before serving a console chunk
        self.lock = threading.Lock()


def _split_job_path(parts: list[str]) -> tuple[str, list[str]]:
    """['job', 'a', 'job', 'b', 'rest'...] -> ('a/b', ['rest', ...])."""
    names = []
    while len(parts) >= 2 and parts[0] == "job":
        names.append(parts[1])
        parts = parts[2:]
    return "/".join(names), parts


def make_handler(state: FakeJenkins, base: list[str]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, body: bytes | str = b"", ctype="application/json", headers=None):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _json(self, obj, code=200):
            self._send(code, json.dumps(obj))

        def _authorized(self) -> bool:
            expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self._send(401, "Unauthorized", "text/plain")
                return False
            return True

        def _children(self, folder: str) -> list[dict]:
            prefix = folder + "/" if folder else ""
            out = []
            for name in state.jobs:
                if name.startswith(prefix) and "/" not in name[len(prefix):]:
                    entry = {"name": name[len(prefix):], "url": f"{base[0]}job/{'/job/'.join(name.split('/'))}/",
                             "color": "blue"}
                    if "<com.cloudbees.hudson.plugins.folder.Folder" in state.jobs[name]:
                        entry["jobs"] = self._children(name)
                    out.append(entry)
            return out

        def _route(self, method: str):
            url = urlparse(self.path)
            path, query = unquote(url.path), parse_qs(url.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.requests.append((method, self.path))
            if not self._authorized():
                return
            job, rest = _split_job_path([p for p in path.split("/") if p])
            if rest[:1] == ["logText"] or rest[1:2] == ["logText"]:
                return self._console(job, rest)
            with state.lock:
                if not job and rest == ["crumbIssuer", "api", "json"]:
                    return self._send(404, "no crumbs", "text/plain")
                if not job and rest == ["api", "json"]:
                    return self._json({"mode": "NORMAL", "jobs": self._children(""),
                                       "views": [{"name": "all", "url": base[0]}]})
                if job and job not in state.jobs:
                    return self._send(404, "no such job", "text/plain")
                if rest == ["createItem"] and method == "POST":
                    state.jobs["/".join(filter(None, [job, query["name"][0]]))] = body.decode()
                    return self._send(200)
                if rest == ["createView"] and method == "POST":
                    state.views["/".join(filter(None, [job, query["name"][0]]))] = body.decode()
                    return self._send(200)
                if rest[:1] == ["view"] and len(rest) >= 3:
                    view = "/".join(filter(None, [job, rest[1]]))
                    if view not in state.views:
                        return self._send(404, "no such view", "text/plain")
                    if rest[2:] == ["config.xml"] and method == "POST":
                        state.views[view] = body.decode()
                        return self._send(200)
                    return self._json({"name": rest[1]})
                if not job and rest[:1] == ["queue"] and rest[-2:] == ["api", "json"]:
                    item = state.queue[int(rest[2])]
                    item["polls"] += 1
                    if item["polls"] < 2:
                        return self._json({"id": int(rest[2]), "why": "Waiting for next available executor"})
                    return self._json({"id": int(rest[2]), "executable": {"number": item["number"],
                                                                          "url": item["url"]}})
                if not job:
                    return self._send(404, "not found", "text/plain")
                job_url = f"{base[0]}job/{'/job/'.join(job.split('/'))}/"
                if rest == ["api", "json"]:
                    if query.get("tree") == ["name"]:
                        return self._json({"name": job.rsplit("/", 1)[-1]})
                    numbers = [n for (j, n) in state.builds if j == job]
                    last = {"number": max(numbers), "url": f"{job_url}{max(numbers)}/"} if numbers else None
                    return self._json({"name": job.rsplit("/", 1)[-1], "fullName": job, "url": job_url,
                                       "lastBuild": last, "jobs": self._children(job)})
                if rest == ["config.xml"]:
                    if method == "POST":
                        state.jobs[job] = body.decode()
                        return self._send(200)
                    return self._send(200, state.jobs[job], "application/xml")
                if rest in (["buildWithParameters"], ["build"]) and method == "POST":
                    params = {k: v[0] for k, v in query.items()}
                    state.triggered.append((job, params))
                    number = 1 + max([n for (j, n) in state.builds if j == job] or [6])
                    build_url = f"{job_url}{number}/"
                    state.builds[(job, number)] = {"params": params, "chunk": 0, "result": state.result,
                                                   "url": build_url}
                    qid = 100 + len(state.queue)
                    state.queue[qid] = {"polls": 0, "number": number, "url": build_url}
                    return self._send(201, b"", headers={"Location": f"{base[0]}queue/item/{qid}/"})
                if len(rest) >= 2 and rest[0].isdigit():
                    build = state.builds.get((job, int(rest[0])))
                    if build is None:
                        return self._send(404, "no such build", "text/plain")
                    if rest[1:] == ["api", "json"]:
                        return self._json({
                            "number": int(rest[0]), "building": False, "result": build["result"],
                            "url": build["url"],
                            "description": "bento: r/a-bento:t (sha256:x)\ndeploy: http://127.0.0.1:8000",
                            "artifacts": [{"fileName": p.rsplit("/", 1)[-1], "relativePath": p}
                                          for p in state.artifacts]})
                    if rest[1] == "artifact":
                        content = state.artifacts.get("/".join(rest[2:]))
                        if content is None:
                            return self._send(404, "no such artifact", "text/plain")
                        return self._send(200, content, "application/octet-stream")
                return self._send(404, "not found", "text/plain")

        def _console(self, job: str, rest: list[str]):
            """progressiveText: one more chunk per request; X-More-Data until the last one."""
            with state.lock:
                build = state.builds.get((job, int(rest[0]))) if rest[0].isdigit() else None
                if build is None or rest[1:] != ["logText", "progressiveText"]:
                    return self._send(404, "not found", "text/plain")
                index = build["chunk"]
                build["chunk"] += 1
            if state.gate:
                state.gate(index)  # outside the lock: the client keeps polling other endpoints
            start = int(parse_qs(urlparse(self.path).query).get("start", ["0"])[0])
            chunks = [c if isinstance(c, bytes) else c.encode() for c in state.console]  # offsets count bytes
            full = b"".join(chunks)
            upto = len(b"".join(chunks[: index + 1]))
            more = index + 1 < len(state.console)
            return self._send(200, full[start:upto], "text/plain",
                              {"X-Text-Size": str(upto), **({"X-More-Data": "true"} if more else {})})

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

    return Handler


@pytest.fixture
def fake_jenkins(monkeypatch, tmp_path):
    state = FakeJenkins()
    base = [""]
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state, base))
    base[0] = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.setenv("HOME_MLOPS_JENKINS_URL", base[0])
    monkeypatch.setenv("HOME_MLOPS_JENKINS_USER", USER)
    monkeypatch.setenv("HOME_MLOPS_JENKINS_TOKEN", TOKEN)
    monkeypatch.setenv("HOME", str(tmp_path))  # JJB's cache goes under ~/.cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    state.url = base[0]
    yield state
    server.shutdown()
    server.server_close()


def invoke(*args: str):
    return CliRunner().invoke(jenkins_app, list(args))


def stderr_of(result) -> str:
    return getattr(result, "stderr", None) or result.output


def test_register_creates_one_job_per_app_with_five_parameters(fake_jenkins):
    result = invoke("register", "--jobs", str(REPO / "jobs"))
    assert result.exit_code == 0, stderr_of(result)
    assert sorted(fake_jenkins.jobs) == sorted([FOLDER] + [f"{FOLDER}/{app}" for app in APPS]
                                               + [f"{FOLDER}/{app}-undeploy" for app in APPS])
    assert ET.fromstring(fake_jenkins.jobs[FOLDER]).tag == "com.cloudbees.hudson.plugins.folder.Folder"
    assert list(fake_jenkins.views) == [f"{FOLDER}/apps"]  # the folder's list view
    assert ET.fromstring(fake_jenkins.views[f"{FOLDER}/apps"]).tag == "hudson.model.ListView"
    root = ET.fromstring(fake_jenkins.jobs[JOB])
    names = [p.findtext("name") for p in root.findall(".//parameterDefinitions/*")]
    assert names == ["APP_NAME", "EXPERIMENT_ID", "RUN_ID", "NAS", "AR_NAME"]
    assert root.findtext(".//scriptPath") == "Jenkinsfile"
    # a second register updates in place (config.xml POST), no duplicate creation
    before = sum(1 for m, p in fake_jenkins.requests if "createItem" in p)
    fake_jenkins.jobs[JOB] = "<flow-definition/>"
    fake_jenkins.jobs[f"{JOB}-undeploy"] = "<flow-definition/>"
    other = f"{FOLDER}/tabular-iris-lightgbm-undeploy"
    fake_jenkins.jobs[other] = "<flow-definition/>"
    result = invoke("register", "--jobs", str(REPO / "jobs"), APP)
    assert result.exit_code == 0, stderr_of(result)
    assert sum(1 for m, p in fake_jenkins.requests if "createItem" in p) == before
    assert "APP_NAME" in fake_jenkins.jobs[JOB]
    # naming an app updates both of its jobs, the folder and its view, and no other app's
    assert "undeployApp()" in fake_jenkins.jobs[f"{JOB}-undeploy"]
    assert ("POST", f"/job/{FOLDER}/config.xml") in fake_jenkins.requests
    assert ("POST", f"/job/{FOLDER}/view/apps/config.xml") in fake_jenkins.requests
    assert fake_jenkins.jobs[other] == "<flow-definition/>"
    assert TOKEN not in stderr_of(result)


def test_register_with_a_wrong_token_is_a_clear_error(fake_jenkins, monkeypatch):
    monkeypatch.setenv("HOME_MLOPS_JENKINS_TOKEN", "wrong")
    result = invoke("register", "--jobs", str(REPO / "jobs"))
    assert result.exit_code == 2, stderr_of(result)
    assert "refused user 'admin'" in stderr_of(result)
    assert not fake_jenkins.jobs


FOLDER_XML = "<com.cloudbees.hudson.plugins.folder.Folder/>"


def _register_one(fake_jenkins, app=APP):
    fake_jenkins.jobs[FOLDER] = FOLDER_XML
    fake_jenkins.jobs[f"{FOLDER}/{app}"] = "<flow-definition/>"


def test_build_triggers_with_parameters_follows_console_and_succeeds(fake_jenkins):
    _register_one(fake_jenkins)
    result = invoke("build", "--app", APP, "--experiment-id", "12", "--run-id", RUN_ID,
                    "--nas", "gs://bucket/mlruns", "--registry", "docker.io/team", "--poll", "0.01")
    err = stderr_of(result)
    assert result.exit_code == 0, err
    assert fake_jenkins.triggered == [(JOB, {"APP_NAME": APP, "EXPERIMENT_ID": "12", "RUN_ID": RUN_ID,
                                             "NAS": "gs://bucket/mlruns", "AR_NAME": "docker.io/team"})]
    # the whole console, in order, exactly once
    assert "".join(fake_jenkins.console) in err
    assert err.count("Finished: SUCCESS") == 1
    assert f"{JOB} #7 SUCCESS" in err
    starts = [p for m, p in fake_jenkins.requests if "progressiveText" in p]
    assert len(starts) == 3 and starts[1].endswith(f"start={len(fake_jenkins.console[0])}")


@pytest.mark.parametrize("outcome", ["FAILURE", "ABORTED", "UNSTABLE"])
def test_build_without_a_step_result_exits_4(fake_jenkins, outcome):
    _register_one(fake_jenkins)
    fake_jenkins.result = outcome
    fake_jenkins.console = ["Started\n", f"Finished: {outcome}\n"]
    result = invoke("build", "--app", APP, "--experiment-id", "1", "--run-id", RUN_ID, "--poll", "0.01")
    assert result.exit_code == 4, stderr_of(result)
    assert f"{JOB} #7 finished {outcome}" in stderr_of(result)
    assert "Traceback" not in stderr_of(result)


def _result(command: str, ok: bool, code: int | str | None) -> bytes:
    return json.dumps({"command": command, "ok": ok, "exit_code": code, "error": "x"}).encode()


@pytest.mark.parametrize("outcome, artifacts, expected", [
    # the failing step's own exit code, from the JSON the pipeline archived
    ("FAILURE", {"home-mlops-bento.json": _result("bento-build", False, 3)}, 3),
    ("FAILURE", {"home-mlops-bento.json": _result("bento-build", True, 0),
                 "home-mlops-gateway.json": _result("fastapi-build", False, 5)}, 5),
    ("ABORTED", {"home-mlops-bento.json": _result("bento-build", True, 0),
                 "home-mlops-deploy.json": _result("deploy", False, 6)}, 6),  # SIGTERM during deploy: rolled back
    ("FAILURE", {"home-mlops-bento.json": _result("bento-build", False, 7)}, 7),
    # what is not a home-mlops result keeps the generic 4
    ("FAILURE", {"home-mlops-bento.json": b"not json"}, 4),
    ("FAILURE", {"home-mlops-bento.json": _result("bento-build", False, "3")}, 4),
    ("FAILURE", {"home-mlops-bento.json": _result("bento-build", False, 99)}, 4),
    ("FAILURE", {"home-mlops-bento.json": _result("bento-build", False, 0)}, 4),
    ("FAILURE", {"other.json": _result("bento-build", False, 3)}, 4),
    ("FAILURE", {"home-mlops-bento.json": b"[" * 2_000_000}, 4),
])
def test_build_exit_code_is_the_failing_steps(fake_jenkins, outcome, artifacts, expected):
    _register_one(fake_jenkins)
    fake_jenkins.result = outcome
    fake_jenkins.artifacts = artifacts
    fake_jenkins.console = ["Started\n", f"Finished: {outcome}\n"]
    result = invoke("build", "--app", APP, "--experiment-id", "1", "--run-id", RUN_ID, "--poll", "0.01")
    assert result.exit_code == expected, stderr_of(result)
    assert f"{JOB} #7 finished {outcome}" in stderr_of(result)
    assert "Traceback" not in stderr_of(result)


def test_a_successful_build_reads_no_artifact(fake_jenkins):
    _register_one(fake_jenkins)
    fake_jenkins.artifacts = {"home-mlops-bento.json": _result("bento-build", False, 3)}
    result = invoke("build", "--app", APP, "--experiment-id", "1", "--run-id", RUN_ID, "--poll", "0.01")
    assert result.exit_code == 0, stderr_of(result)
    assert not [p for m, p in fake_jenkins.requests if "/artifact/" in p]


def test_console_is_written_while_the_build_runs(fake_jenkins):
    """Each chunk reaches the writer before Jenkins has produced the next one: the server
    holds chunk i+1 until the writer has received chunk i (a client that printed the
    console only at the end would time out here)."""
    _register_one(fake_jenkins)
    fake_jenkins.console = [f"line {i}\n" for i in range(5)]
    written: list[str] = []
    received = [threading.Event() for _ in fake_jenkins.console]
    late: list[int] = []

    def gate(index: int) -> None:
        if index and not received[index - 1].wait(timeout=20):
            late.append(index)

    def write(text: str) -> None:
        written.append(text)
        received[len(written) - 1].set()

    fake_jenkins.gate = gate
    config = JenkinsConfig(url=fake_jenkins.url, user=USER, token=TOKEN)
    code = follow.trigger_and_follow(config, JOB, {"APP_NAME": APP}, timeout=60, interval=0.01,
                                     missing_hint="", write=write, say=lambda _: None)
    assert code == 0 and late == []
    assert written == fake_jenkins.console  # chunk by chunk, in order, each once
    starts = [p.rsplit("start=", 1)[-1] for m, p in fake_jenkins.requests if "progressiveText" in p]
    assert starts == [str(len("".join(fake_jenkins.console[:i]))) for i in range(5)]


def test_console_offsets_are_bytes_and_a_split_character_is_kept(fake_jenkins):
    """Jenkins counts the console in bytes and may cut a chunk inside a UTF-8 character."""
    _register_one(fake_jenkins)
    text = "modèle ✓ déployé\n"
    data = text.encode()
    cut = data.index("✓".encode()) + 1  # inside the 3-byte check mark
    fake_jenkins.console = [data[:cut], data[cut:]]
    written: list[str] = []
    config = JenkinsConfig(url=fake_jenkins.url, user=USER, token=TOKEN)
    follow.trigger_and_follow(config, JOB, {"APP_NAME": APP}, timeout=60, interval=0.01, missing_hint="",
                              write=written.append, say=lambda _: None)
    assert "".join(written) == text and "\ufffd" not in "".join(written)
    starts = [p.rsplit("start=", 1)[-1] for m, p in fake_jenkins.requests if "progressiveText" in p]
    assert starts == ["0", str(cut)]


def test_build_of_unregistered_app_is_not_found(fake_jenkins):
    fake_jenkins.jobs[FOLDER] = FOLDER_XML
    result = invoke("build", "--app", "tabular-iris-pytorch", "--experiment-id", "1", "--run-id", RUN_ID)
    assert result.exit_code == 3, stderr_of(result)
    assert "home-mlops jenkins register" in stderr_of(result)
    assert not fake_jenkins.triggered


@pytest.mark.parametrize("args, needle", [
    (["--app", "Bad_App"], "APP_NAME"),
    (["--experiment-id", "1; rm -rf /"], "EXPERIMENT_ID"),
    (["--run-id", "$(touch x)"], "RUN_ID"),
    (["--nas", "../etc"], "NAS"),
    (["--registry", "UPPER/case:tag"], "AR_NAME"),
])
def test_build_validates_parameters_before_calling_jenkins(fake_jenkins, args, needle):
    base = {"--app": APP, "--experiment-id": "1", "--run-id": RUN_ID}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [x for kv in base.items() for x in kv]
    result = invoke("build", *flat)
    assert result.exit_code == 2, stderr_of(result)
    assert needle in stderr_of(result)
    assert fake_jenkins.requests == []


@pytest.mark.parametrize("unset", ["HOME_MLOPS_JENKINS_URL", "HOME_MLOPS_JENKINS_USER", "HOME_MLOPS_JENKINS_TOKEN"])
@pytest.mark.parametrize("command", [["register"], ["status"],
                                     ["build", "--app", APP, "--experiment-id", "1", "--run-id", RUN_ID]])
def test_missing_configuration_is_exit_2_with_a_clear_message(fake_jenkins, monkeypatch, unset, command):
    monkeypatch.delenv(unset)
    result = invoke(*command)
    assert result.exit_code == 2
    err = stderr_of(result)
    assert f"Jenkins is not configured: {unset} is not set" in err
    assert "Traceback" not in err
    assert fake_jenkins.requests == []


def test_unreachable_jenkins_is_exit_7(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HOME_MLOPS_JENKINS_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("HOME_MLOPS_JENKINS_USER", USER)
    monkeypatch.setenv("HOME_MLOPS_JENKINS_TOKEN", TOKEN)
    result = invoke("build", "--app", APP, "--experiment-id", "1", "--run-id", RUN_ID)
    assert result.exit_code == 7, stderr_of(result)
    assert "did not answer" in stderr_of(result)


def test_status_lists_the_last_build_of_each_app(fake_jenkins):
    _register_one(fake_jenkins)
    fake_jenkins.builds[(JOB, 3)] = {"params": {}, "chunk": 0, "result": "FAILURE", "url": "u"}
    _register_one(fake_jenkins, "tabular-iris-lightgbm")
    result = invoke("status", "--jobs", str(REPO / "jobs"))
    assert result.exit_code == 0, stderr_of(result)
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["APP", "BUILD", "RESULT", "DESCRIPTION"]
    lines = {line.split()[0]: line for line in rows}
    assert set(lines) == set(APPS)  # one row per app, no -undeploy rows
    assert "#3" in lines[APP] and "FAILURE" in lines[APP]
    # the description on one line
    assert "bento: r/a-bento:t (sha256:x); deploy: http://127.0.0.1:8000" in lines[APP]
    assert "NEVER BUILT" in lines["tabular-iris-lightgbm"]
    assert "NOT REGISTERED" in lines["tabular-iris-pytorch"]


def test_status_without_jobs_folder_lists_the_folders_build_jobs(fake_jenkins, tmp_path):
    _register_one(fake_jenkins)
    fake_jenkins.jobs[f"{JOB}-undeploy"] = "<flow-definition/>"
    fake_jenkins.builds[(JOB, 8)] = {"params": {}, "chunk": 0, "result": "SUCCESS", "url": "u"}
    result = invoke("status", "--jobs", str(tmp_path / "nothing-here"))
    assert result.exit_code == 0, stderr_of(result)
    rows = result.stdout.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[:3] == [APP, "#8", "SUCCESS"]


def test_undeploy_runs_the_apps_undeploy_job_without_parameters(fake_jenkins):
    _register_one(fake_jenkins, f"{APP}-undeploy")
    result = invoke("undeploy", "--app", APP, "--poll", "0.01")
    assert result.exit_code == 0, stderr_of(result)
    assert fake_jenkins.triggered == [(f"{JOB}-undeploy", {})]
    assert ("POST", f"/job/{FOLDER}/job/{APP}-undeploy/build") in fake_jenkins.requests
    assert f"ok {JOB}-undeploy #7 SUCCESS" in stderr_of(result)
    assert "[Pipeline] stage" in stderr_of(result)  # the console was followed


def test_undeploy_failure_and_missing_job(fake_jenkins):
    _register_one(fake_jenkins, f"{APP}-undeploy")
    fake_jenkins.result = "FAILURE"
    result = invoke("undeploy", "--app", APP, "--poll", "0.01")
    assert result.exit_code == 4, stderr_of(result)
    assert f"{JOB}-undeploy #7 finished FAILURE" in stderr_of(result)
    result = invoke("undeploy", "--app", "tabular-iris-pytorch", "--poll", "0.01")
    assert result.exit_code == 3, stderr_of(result)
    assert "home-mlops jenkins register tabular-iris-pytorch" in stderr_of(result)
    result = invoke("undeploy", "--app", "[/x]")
    assert result.exit_code == 2, stderr_of(result)
    assert "[/x]" in stderr_of(result)
    assert len(fake_jenkins.triggered) == 1  # only the first call reached Jenkins


def test_module_is_import_light():
    import subprocess

    code = ("import sys, home_mlops.cli.jenkins, home_mlops.jenkins.follow; "
            "bad = [m for m in ('jenkins', 'jenkins_jobs', 'requests', 'mlflow', 'bentoml', 'docker') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_description_html_reads_back_as_the_summary_lines():
    """The library writes the description as escaped HTML lines joined by <br> (Safe HTML
    formatter); the CLI shows them as the text lines they were, control characters as '?'."""
    from home_mlops.jenkins.follow import description_lines

    html = "bento: r/a-bento:t (sha256:1)<br>\ngateway: a &lt;b&gt; &amp; c<br>\ndeploy: \x1b[31mx"
    assert description_lines(html) == ["bento: r/a-bento:t (sha256:1)", "gateway: a <b> & c", "deploy: ?[31mx"]
    assert description_lines(None) == []
