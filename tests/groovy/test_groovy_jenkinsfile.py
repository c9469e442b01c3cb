"""The Jenkinsfile's conventions (issue 12 item 4, issue 16's serving modes) and the harness's
fidelity to Jenkins (issue 12 item 3), under tests/groovy/harness.groovy.

- serving modes: 'Build bento' runs unless the mode is fastapi, 'Build gateway' unless it is
  bento; the other shows as skipped (`when`), for every mode and for unset;
- resolve once: each later stage gets the previous build stage's result file as
  HOME_MLOPS_FROM; only this build's result files are archived;
- timestamps(), the library without a version, and milestones: an older build that reaches
  the Deploy stage, or the port lock, after a newer one is cancelled (NOT_BUILT) before it deploys;
- the harness: withEnv as EnvVars.overrideAll (never expanded, empty removes, PATH+X),
  `sh` as /bin/sh -xe (dash), readJSON as pipeline-utility-steps (JSONNull, returnPojo),
  parallel runs that never see each other's configuration.
All scenarios run in one JVM (module fixture).
"""
from __future__ import annotations

import copy
from html.parser import HTMLParser
import json
import re

import pytest

import runner
from runner import APP, DEPLOY_HOST, PARAMS, REPO, RUN_ID, calls, ok_rules

REG = "127.0.0.1:5000/home-mlops"
TAG = "r-0123456789ab"
APP_ENV = {"HOME_MLOPS_PORT": "8003"}
MODES = {
    # mode (None: unset) -> (stages that run, the CLI commands in order)
    None: (["Build bento", "Build gateway", "Deploy"], ["bento-build", "fastapi-build", "deploy"]),
    "bento+gateway": (["Build bento", "Build gateway", "Deploy"], ["bento-build", "fastapi-build", "deploy"]),
    "bento": (["Build bento", "Deploy"], ["bento-build", "deploy"]),
    "fastapi": (["Build gateway", "Deploy"], ["fastapi-build", "deploy"]),
}
STAGES = ["Build bento", "Build gateway", "Deploy"]
FILES = {"bento-build": "home-mlops-bento.json", "fastapi-build": "home-mlops-gateway.json",
         "deploy": "home-mlops-deploy.json"}


def mode_rules(mode: str | None) -> list[dict]:
    rules = copy.deepcopy(ok_rules())
    if mode == "fastapi":
        # the standalone server (serving contract): role server, image <app>-server
        rules[1]["json"].update(role="server", image=f"{REG}/{APP}-server:{TAG}")
    elif mode is not None:
        rules[1]["json"]["role"] = "gateway"
    if mode is not None:
        rules[2]["json"]["serving"] = mode
    return rules


def mode_env(mode: str | None) -> dict:
    env = dict(APP_ENV)
    if mode is not None:
        env["HOME_MLOPS_SERVING"] = mode
    return env


def _scenarios(tmp) -> dict[str, dict]:
    s: dict[str, dict] = {}
    for mode in MODES:
        s[f"mode-{mode}"] = {"target": "jenkinsfile", "env": mode_env(mode), "sh": {"rules": mode_rules(mode)}}
    # not a mode: both builds run and the CLI refuses it (exit 2, naming the setting)
    s["mode-hostile"] = {"target": "jenkinsfile", "env": mode_env("x; touch /tmp/pwned"), "sh": {"rules": [
        {"match": " bento-build ", "status": 2, "json": {"ok": False, "exit_code": 2,
                                                         "error": "HOME_MLOPS_SERVING: not a serving mode"}}]}}
    # a result file an older build left in the workspace is neither resolved from nor archived
    stale = tmp / "stale-ws"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "home-mlops-bento.json").write_text(json.dumps({"ok": True, "image": "stale:old", "run_id": "0" * 32}))
    s["mode-fastapi-stale-bento"] = {"target": "jenkinsfile", "workspace": str(stale), "env": mode_env("fastapi"),
                                     "sh": {"rules": mode_rules("fastapi")}}
    # milestones: a newer build of the job has passed the first (Deploy stage) or the second (port lock)
    for passed in (1, 2):
        s[f"superseded-{passed}"] = {"target": "jenkinsfile", "env": mode_env(None), "supersededAt": passed,
                                     "sh": {"rules": mode_rules(None)}}
    s["summary-registered"] = {"target": "code", "code": SUMMARY_CODE}
    s["summary-fastapi"] = {"target": "code", "code": SUMMARY_FASTAPI_CODE}
    s["readjson"] = {"target": "code", "code": READJSON_CODE}
    s["step-null-error"] = {"target": "code", "code": "return bentoBuild()", "sh": {"rules": [
        {"match": " bento-build ", "status": 4, "json": {"ok": False, "exit_code": 4, "error": None}}]}}
    s["withenv-real"] = {"target": "code", "mode": "real", "code": WITHENV_CODE,
                         "env": {"PATH": "/usr/bin:/bin", "HOME": "/home/jenkins-stand-in"}}
    s["withenv-no-equals"] = {"target": "code", "code": "withEnv(['JUST_A_NAME']) { sh 'true' }"}
    s["sh-dash"] = {"target": "code", "mode": "real", "code": SH_CODE, "env": {"PATH": "/usr/bin:/bin"}}
    # from: reaches the real CLI (HOME_MLOPS_FROM), which reads the file: one that holds no resolved run is refused
    s["real-cli-from"] = {"target": "code", "mode": "real",
                          "code": "writeFile(file: 'earlier.json', text: '{\"ok\": false}')\n"
                                  "return fastapiBuild(from: 'earlier.json', push: false)",
                          "env": {"PATH": f"{runner.VENV_BIN}:/usr/bin:/bin", "HOME_MLOPS_HOME": str(tmp / "cli-state"),
                                  "MLFLOW_TRACKING_URI": "http://127.0.0.1:19501/"}}
    for name, scenario in s.items():
        scenario["name"] = name
    return s


SUMMARY_CODE = f"""
import io.homemlops.Summary
Map bento = readJSON(text: '''{json.dumps({"ok": True, "app": APP, "image": f"{REG}/{APP}-bento:{TAG}",
                                          "digest": "sha256:" + "b" * 64, "summary": "bento: built"})}''')
Map gateway = readJSON(text: '''{json.dumps({"ok": True, "app": APP, "role": "gateway", "image": f"{REG}/{APP}-gateway:{TAG}",
                                            "digest": None})}''')
Map deployment = readJSON(text: '''{json.dumps({
    "ok": True, "app": APP, "run_id": RUN_ID, "url": f"http://{DEPLOY_HOST}:8003", "local_url": "http://127.0.0.1:8003",
    "serving": "bento+gateway", "previous_run_id": None,
    "summary": f"deploy: http://{DEPLOY_HOST}:8003 (run {RUN_ID})",
    "registered_model": {"name": "house-prices", "alias": "champion", "version": "7", "run_id": RUN_ID,
                         "uri": "models:/house-prices@champion"}})}''')
return [Summary.success(bento, gateway, deployment), Summary.line('deploy', deployment)]
"""

SUMMARY_FASTAPI_CODE = f"""
import io.homemlops.Summary
Map server = [ok: true, app: '{APP}', role: 'server', image: '{REG}/{APP}-server:{TAG}', digest: 'sha256:{"s" * 64}']
Map deployment = [ok: true, app: '{APP}', url: 'http://{DEPLOY_HOST}:8003', serving: 'fastapi',
                  previous_run_id: 'ffffffffffffffffffffffffffffffff']
return Summary.success([:], server, deployment)
"""

READJSON_CODE = """
writeFile(file: 'r.json', text: '{"error": null, "seconds": 1.5, "port": 8003, "nested": {"a": null}, "list": [1, null]}')
List out = []
for (boolean pojo : [false, true]) {
    def j = pojo ? readJSON(file: 'r.json', returnPojo: true) : readJSON(file: 'r.json')
    out.add([j.error == null, j.error ? 'truthy' : 'falsy', String.valueOf(j.error), j.getClass().name,
             j.nested.getClass().name, j.list.getClass().name, j.seconds.getClass().name, j.port.getClass().name,
             io.homemlops.Summary.text(j.error), io.homemlops.Summary.line('bento', j)])
}
return out
"""

WITHENV_CODE = """
withEnv(['LITERAL=$HOME and ${PATH} and `id`', 'EMPTY=', 'PATH+EXTRA=/opt/extra/bin', 'SPACES= a  b ']) {
    sh 'printf "%s\\n" "$LITERAL" "${EMPTY-unset}" "$PATH" "[$SPACES]" > env-seen.txt'
}
return readFile('env-seen.txt')
"""

SH_CODE = """
List out = []
// dash, not bash; -x traces to stderr; -e stops at the first failing command
out.add(sh(script: 'test -z "${BASH_VERSION:-}" && readlink -f /proc/$$/exe', returnStdout: true).trim())
out.add(sh(script: 'false; echo after-false', returnStatus: true))
out.add(sh(script: 'echo $-', returnStdout: true).trim())
return out
"""


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("groovy-jenkinsfile")
    scenarios = _scenarios(tmp)
    records = runner.run_harness(tmp, list(scenarios.values()), parallel=2)
    return {r["name"]: r for r in records}


def _stages(r: dict) -> tuple[list[str], dict[str, str]]:
    ran = [c["args"][0] for c in calls(r, "stage") if not c.get("skipped")]
    skipped = {c["args"][0]: c["skipped"] for c in calls(r, "stage") if c.get("skipped")}
    return ran, skipped


def _command(script: str) -> str:
    return re.search(r" (bento-build|fastapi-build|deploy) ", script).group(1)


@pytest.mark.parametrize("mode", list(MODES), ids=lambda m: str(m))
def test_each_serving_mode_runs_its_builds_and_shows_the_other_as_skipped(rec, mode):
    r = rec[f"mode-{mode}"]
    assert r["result"] == "SUCCESS", r["failure"]
    stages, commands = MODES[mode]
    ran, skipped = _stages(r)
    assert ran == stages
    assert skipped == {s: "when" for s in STAGES if s not in stages}
    for stage in skipped:
        assert f'Stage "{stage}" skipped due to when conditional' in r["log"]
    shs = calls(r, "sh")
    assert [_command(c["args"][0]["script"]) for c in shs] == commands
    # resolve once: each later stage is handed the previous build stage's result file
    expected_from = [None] + [FILES[c] for c in commands[:-1]]
    assert [c["env"].get("HOME_MLOPS_FROM") for c in shs] == expected_from
    # only the files this build wrote are archived
    (archive,) = calls(r, "archiveArtifacts")
    assert archive["files"] == sorted(FILES[c] for c in commands)
    summary = "\n".join(r["log"])
    assert ("bento image:" in summary) == ("bento-build" in commands)
    assert ("server image:" in summary) == (mode == "fastapi")
    assert ("gateway image:" in summary) == (mode in (None, "bento+gateway"))


def test_a_value_that_is_not_a_mode_is_left_to_the_cli(rec):
    r = rec["mode-hostile"]
    assert r["result"] == "FAILURE" and r["failedStage"] == "Build bento"
    assert "exit code 2 (bad input" in r["failure"] and "HOME_MLOPS_SERVING" in r["failure"]
    (sh,) = calls(r, "sh")
    # verbatim, through the environment only
    assert sh["env"]["HOME_MLOPS_SERVING"] == "x; touch /tmp/pwned"
    assert "touch" not in sh["args"][0]["script"]


def test_an_older_builds_result_file_is_neither_resolved_from_nor_archived(rec):
    r = rec["mode-fastapi-stale-bento"]
    assert r["result"] == "SUCCESS", r["failure"]
    gateway, deploy = calls(r, "sh")
    assert "HOME_MLOPS_FROM" not in gateway["env"]
    assert deploy["env"]["HOME_MLOPS_FROM"] == "home-mlops-gateway.json"
    (archive,) = calls(r, "archiveArtifacts")
    assert archive["files"] == ["home-mlops-deploy.json", "home-mlops-gateway.json"]
    assert "stale:old" not in "\n".join(r["log"]) + (r["description"] or "")


def test_the_pipeline_has_timestamps_a_timeout_and_the_library_without_a_version(rec):
    r = rec["mode-None"]
    steps = [c["step"] for c in r["calls"]]
    assert "options.timestamps" in steps and "options.timeout" in steps
    text = (REPO / "Jenkinsfile").read_text()
    libraries = re.findall(r"^\s*@Library\((.*?)\)\s*_", text, flags=re.M)
    # one library, no @version: the folder/global configuration decides the ref (issue 12 item 4)
    assert libraries == ["'home-mlops'"]
    assert not re.search(r"\blibrary\s*\(", text), "no dynamic library loading either"


def test_deploy_passes_a_milestone_before_the_lock_and_one_inside_it(rec):
    r = rec["mode-None"]
    milestones = calls(r, "milestone")
    assert [m["ordinal"] for m in milestones] == [1, 2]
    assert [m["stage"] for m in milestones] == ["Deploy", "Deploy"]
    assert milestones[0]["locks"] == [] and milestones[1]["locks"] == ["home-mlops-port-8003"]
    order = [c["step"] for c in r["calls"] if c["step"] in ("milestone", "lock", "sh") and c["stage"] == "Deploy"]
    assert order == ["milestone", "lock", "milestone", "sh"]


@pytest.mark.parametrize("passed", [1, 2])
def test_an_older_build_never_deploys_after_a_newer_one(rec, passed):
    r = rec[f"superseded-{passed}"]
    # the milestone step cancels the older build as NOT_BUILT (not ABORTED)
    assert r["result"] == "NOT_BUILT"
    assert r["failedStage"] == "Deploy"
    commands = [_command(c["args"][0]["script"]) for c in calls(r, "sh")]
    assert commands == ["bento-build", "fastapi-build"], "the deploy must not run"
    # superseded at the Deploy stage, or once it held the port lock (a newer build deployed meanwhile)
    assert calls(r, "milestone")[-1]["superseded"] is True
    assert len(calls(r, "lock")) == passed - 1
    assert [c["args"][0] for c in calls(r, "post")] == ["always", "notBuilt"]
    assert calls(r, "echo")[-1]["args"][0] == (
        "home-mlops: NOT BUILT, stopped in stage 'Deploy': a newer build of this job got there first; this build deployed nothing")
    assert "deploy:" not in (r["description"] or "")


def test_the_success_summary_with_a_registered_model_is_pinned(rec):
    r = rec["summary-registered"]
    assert r["result"] == "SUCCESS", r["failure"]
    success, deploy_line = r["returned"]
    assert success == "\n".join([
        f"home-mlops: deployed {APP}",
        "  serving:       bento+gateway",
        f"  bento image:   {REG}/{APP}-bento:{TAG} @ sha256:{'b' * 64}",
        f"  gateway image: {REG}/{APP}-gateway:{TAG}",
        f"  url:           http://{DEPLOY_HOST}:8003/predict",
        "  on this host:  http://127.0.0.1:8003/predict",
        f"  model:         models:/house-prices@champion = version 7, run {RUN_ID}",
    ])
    # the CLI's own summary line is the description line, as is
    assert deploy_line == f"deploy: http://{DEPLOY_HOST}:8003 (run {RUN_ID})"


def test_the_success_summary_of_the_standalone_server(rec):
    r = rec["summary-fastapi"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert r["returned"] == "\n".join([
        f"home-mlops: deployed {APP}",
        "  serving:       fastapi",
        f"  server image:  {REG}/{APP}-server:{TAG} @ sha256:{'s' * 64}",
        f"  url:           http://{DEPLOY_HOST}:8003/predict",
        "  replaced run:  ffffffffffffffffffffffffffffffff",
    ])


def test_readjson_returns_what_pipeline_utility_steps_returns(rec):
    r = rec["readjson"]
    assert r["result"] == "SUCCESS", r["failure"]
    jsonlib, pojo = r["returned"]
    # json-lib: JSON null is JSONNull, an object: `== null` is false, it is truthy, prints "null"
    assert jsonlib[:8] == [False, "truthy", "null", "net.sf.json.JSONObject", "net.sf.json.JSONObject",
                           "net.sf.json.JSONArray", "java.lang.Double", "java.lang.Integer"]
    # returnPojo: true gives plain Java structures and real nulls
    assert pojo[:8] == [True, "falsy", "null", "java.util.LinkedHashMap", "java.util.LinkedHashMap",
                        "java.util.ArrayList", "java.lang.Double", "java.lang.Integer"]
    # the library reads either kind the same way: a JSON null is no text
    assert jsonlib[8:] == pojo[8:] == ["", "bento: (no image)"]


def test_a_null_error_in_a_result_never_reads_as_text(rec):
    r = rec["step-null-error"]
    assert r["result"] == "FAILURE"
    assert calls(r, "readJSON")[0]["args"][0] == {"file": "home-mlops-bento.json", "returnPojo": True}
    assert r["failure"] == "bentoBuild: home-mlops bento-build failed with exit code 4 (build failed)"


def test_withenv_sets_values_as_given_and_only_the_shell_expands(rec):
    r = rec["withenv-real"]
    assert r["result"] == "SUCCESS", (r["failure"], [c.get("stderr") for c in calls(r, "sh")])
    literal, empty, path, spaces = r["returned"].splitlines()
    assert literal == "$HOME and ${PATH} and `id`"
    assert empty == "unset", "an empty withEnv value removes the variable (EnvVars.override)"
    assert path == "/opt/extra/bin:/usr/bin:/bin", "PATH+EXTRA prepends"
    assert spaces == "[ a  b ]"
    r = rec["withenv-no-equals"]
    assert r["result"] == "FAILURE" and "IllegalArgumentException: JUST_A_NAME" in r["failure"]
    assert not calls(r, "sh")


def test_sh_is_dash_with_xe(rec):
    r = rec["sh-dash"]
    assert r["result"] == "SUCCESS", (r["failure"], [c.get("stderr") for c in calls(r, "sh")])
    shell, status, flags = r["returned"]
    assert shell.endswith("/dash")
    assert status == 1 and "after-false" not in calls(r, "sh")[1]["stdout"]
    assert "e" in flags and "x" in flags
    assert "+ false" in calls(r, "sh")[1]["stderr"], "sh -x traces each command to stderr"


def test_from_reaches_the_real_cli(rec):
    r = rec["real-cli-from"]
    assert r["result"] == "FAILURE"
    (sh,) = calls(r, "sh")
    assert sh["env"]["HOME_MLOPS_FROM"] == "earlier.json" and sh["status"] == 2, sh.get("stderr", "")[-500:]
    assert "--from earlier.json: " in r["failure"] and "holds no resolved run" in r["failure"], r["failure"]


def test_parallel_runs_never_see_each_others_configuration(tmp_path):
    """The flake behind "missing required option 'runId'": runs on the pool's threads once
    shared JsonSlurper maps. 48 runs, 8 at a time, each with its own RUN_ID and app."""
    runs = []
    for i in range(48):
        params = dict(PARAMS, RUN_ID=f"{i:032x}", APP_NAME=f"hmt-j2-par-{i}")
        # half of them with no RUN_ID in params but in env (the fallback path)
        run = {"name": f"par-{i}", "target": "code", "code": "return deployApp()", "sh": {"rules": ok_rules()},
               "recordEnv": True}
        if i % 2:
            run.update(params={k: v for k, v in params.items() if k != "RUN_ID"}, env={"RUN_ID": params["RUN_ID"]})
        else:
            run["params"] = params
        runs.append(run)
    records = runner.run_harness(tmp_path, runs, parallel=8)
    for i, r in enumerate(records):
        assert r["result"] == "SUCCESS", (i, r["failure"])
        (sh,) = calls(r, "sh")
        assert sh["env"]["RUN_ID"] == f"{i:032x}" and sh["env"]["APP_NAME"] == f"hmt-j2-par-{i}", i


class _TagBalance(HTMLParser):
    VOID = {"br", "img", "hr"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.stack and tag in ("code", "td", "tr", "p", "pre"):
            self.problems.append(f"<{tag}> at {self.getpos()} inside another <{tag}>")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


@pytest.mark.parametrize("page", sorted(p.name for p in (REPO / "vars").glob("*.txt")))
def test_help_pages_are_well_formed_html_with_one_row_per_option(page):
    """Jenkins renders vars/*.txt as HTML (Safe HTML): tags balanced, each option row once,
    no row pasted into another (a bad replacement once repeated a row's text inside it)."""
    text = (REPO / "vars" / page).read_text()
    parser = _TagBalance()
    parser.feed(text)
    parser.close()
    assert not parser.problems and not parser.stack, (parser.problems, parser.stack)
    rows = re.findall(r"<tr><td><code>(\w+)</code></td>", text)
    assert rows and len(rows) == len(set(rows)), rows
    for line in text.splitlines():
        if line.lstrip().startswith("<tr><td>"):
            assert line.count("<tr>") == 1 and line.count("</tr>") == 1, line[:200]
