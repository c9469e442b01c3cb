"""Hostile job parameters and app settings through the real Jenkinsfile, the real library
steps and the real CLI, with `sh` running `/bin/sh -xe -c` for real as Jenkins does
(harness real-shell mode).

Every hostile value is checked in-process against every parameter's validator (cheap);
through the shell each value then runs once, through one (step, parameter) pair in
rotation, so all three steps (bentoBuild through the Jenkinsfile, fastapiBuild and
deployApp) see every parameter, each pair at least one shell injection. Each run must end in the CLI's refusal (exit 2, a JSON result naming the
parameter), the value must reach the CLI verbatim through the environment, no injected
command may run (canary files), and markup (console markup, HTML, terminal escapes)
must reach the console as typed, never interpreted. The same for the per-app deploy
settings deployApp passes on (HOME_MLOPS_*). Valid-but-hostile values: an AR_NAME on a
host the registry credentials are not mapped to gets no credentials and no connection;
NAS=/ is a clean "not found".
Every run of this module shares one JVM (module fixture), four at a time.
"""
from __future__ import annotations

import json
import os
import re
import socket
import threading
from pathlib import Path

import pytest

import runner
from runner import PARAMS, SECRET, VENV_BIN, calls, sh_scripts

from home_mlops.errors import HomeMlopsError
from home_mlops.params import validate_app, validate_experiment_id, validate_nas, validate_registry, validate_run_id

VALIDATORS = {
    "APP_NAME": validate_app,
    "EXPERIMENT_ID": validate_experiment_id,
    "RUN_ID": validate_run_id,
    "NAS": validate_nas,
    "AR_NAME": validate_registry,
}
STEPS = ("bentoBuild", "fastapiBuild", "deployApp")
STEP_SCRIPTS = {
    "bentoBuild": 'rm -f -- "$HOME_MLOPS_JSON" && home-mlops bento-build --json "$HOME_MLOPS_JSON"',
    "fastapiBuild": 'rm -f -- "$HOME_MLOPS_JSON" && home-mlops fastapi-build --json "$HOME_MLOPS_JSON"',
    "deployApp": 'rm -f -- "$HOME_MLOPS_JSON" && home-mlops deploy --json "$HOME_MLOPS_JSON"',
}
STEP_FILES = {"bentoBuild": "home-mlops-bento.json", "fastapiBuild": "home-mlops-gateway.json",
              "deployApp": "home-mlops-deploy.json"}
# deployApp runs get an app and a port of this helper's own, so a value that got through
# could never replace a real deployment
DEPLOY_APP = "hmt-j2-hostile"
DEPLOY_PORT = "19502"
FOREIGN_REGISTRY_PORT = 19503
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def hostile_values(canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"; touch {c}",
        f"&& touch {c}",
        f"| touch {c}",
        f"`touch {c}`",
        f"$(touch {c})",
        f"${{IFS}}touch${{IFS}}{c}",
        f"x'; touch {c}; echo '",
        f'x"; touch {c}; echo "',
        f"x\ntouch {c}",
        f"> {c}",
        f"<(touch {c})",
        f"gs://bucket/$(touch {c})",
        f"127.0.0.1:5000/home-mlops;touch {c}",
        f"$(touch {c})$(touch {c}.2)",
        f"x\r\ntouch {c}",
        "../../etc/passwd",
        "/srv/mlruns/../../etc",
        "A" * 5000,
        "ünïcödé-模型",
        "a\u200bb",
        "-rf",
        "--help",
        "*",
        "[a-z]*?",
        "~root",
        "$HOME",
        "${PATH}",
        "%s%n%x",
        "a b",
        "#comment",
        "\\",
        "http://evil.example/x",
        "-1",
        "0123456789abcdef0123456789abcdeF",
        # markup: console markup (rich), HTML (the Jenkins UI renders descriptions as Safe HTML),
        # terminal escapes (colour, an OSC 8 hyperlink, a title change): shown as typed or not at all
        "[/x]",
        "[link=http://x]y",
        "[bold red]x[/]",
        "x[/x]",
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">x</a>',
        "&lt;b&gt;&amp;",
        "\x1b[31mred\x1b[0m",
        "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\",
        "\x1b]0;pwned\x07",
    ]


MARKUP = {"[/x]", "[link=http://x]y", "[bold red]x[/]", "x[/x]", "<script>alert(1)</script>",
          "<img src=x onerror=alert(1)>", '<a href="javascript:alert(1)">x</a>', "&lt;b&gt;&amp;"}


def cli_env(tmp_path: Path) -> dict[str, str]:
    if not (VENV_BIN / "home-mlops").exists():
        pytest.fail(f"{VENV_BIN / 'home-mlops'} missing: install the project into .venv (pip install -e .)")
    return {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME_MLOPS_HOME": str(tmp_path / "state"),
        "HOME_MLOPS_PLATFORM_DIR": str(tmp_path / "platform"),
        # if a value ever got past validation, the CLI would fail here with 7, not 2
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9/",
        "HOME": str(tmp_path / "home"),
        "HOME_MLOPS_PORT": DEPLOY_PORT,
    }


def parameter_cases(canary: Path) -> list[tuple[str, str, str]]:
    """(step, parameter, value): each value once, the (step, parameter) pairs in rotation.
    The list starts with 15 shell injections, so every pair gets one; the rest spread on."""
    pairs = [(step, name) for name in VALIDATORS for step in STEPS]
    return [(*pairs[i % len(pairs)], value) for i, value in enumerate(hostile_values(canary))]


# The deploy settings the CLI reads as strings: refused with exit 2 and a JSON result naming them.
STRING_SETTINGS = ["HOME_MLOPS_BIND", "HOME_MLOPS_MEMORY", "HOME_MLOPS_TARGET", "HOME_MLOPS_SERVING"]
# Typed as numbers by the CLI's options: refused by click before the command runs.
NUMBER_SETTINGS = ["HOME_MLOPS_CPUS", "HOME_MLOPS_READY_TIMEOUT"]


def setting_values(canary: Path) -> list[str]:
    """Six shell injections first (one per setting in the rotation below), then the rest."""
    c = str(canary)
    return [f"; touch {c}", f"$(touch {c})", f"`touch {c}`", f"x'; touch {c}; echo '", f"x\ntouch {c}",
            f"| touch {c}", "--help", "-rf", "*", "\x1b[31mred\x1b[0m", "[/x]", "<script>alert(1)</script>"]


def setting_cases(canary: Path) -> list[tuple[str, str]]:
    settings = STRING_SETTINGS + NUMBER_SETTINGS
    values = setting_values(canary)
    cases = [(settings[i % len(settings)], value) for i, value in enumerate(values)]
    # the port never reaches the CLI (it names the Jenkins lock): every value, no process started
    cases += [("HOME_MLOPS_PORT", value) for value in values]
    return cases


class ConnectionRecorder:
    """A TCP listener on loopback that counts connections (a registry that must never be contacted)."""

    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("groovy-hostile")
    canary = tmp / "canary" / "pwned"
    canary.parent.mkdir()
    env = cli_env(tmp)
    runs, cases = [], []

    def add(kind: str, case: tuple, run: dict) -> None:
        run.setdefault("workspace", str(tmp / "ws" / f"{len(runs)}"))
        run.setdefault("mode", "real")
        run.setdefault("env", env)
        run["name"] = f"{kind}-{len(runs)}"
        runs.append(run)
        cases.append((kind, case, run))

    for step, name, value in parameter_cases(canary):
        params = {**PARAMS, "APP_NAME": DEPLOY_APP, name: value} if step == "deployApp" else {**PARAMS, name: value}
        if step == "bentoBuild":
            add("param", (step, name, value), {"target": "jenkinsfile", "params": params})
        else:
            add("param", (step, name, value), {"target": "code", "code": f"return {step}()", "params": params})
    for var, value in setting_cases(canary):
        add("setting", (var, value), {"target": "code", "code": "return deployApp()",
                                      "params": dict(PARAMS, APP_NAME=DEPLOY_APP), "env": dict(env, **{var: value})})
    foreign = f"127.0.0.1:{FOREIGN_REGISTRY_PORT}/home-mlops"
    for step in STEPS:
        for case, params in (("foreign", dict(PARAMS, APP_NAME=DEPLOY_APP, AR_NAME=foreign)),
                             ("nas-root", dict(PARAMS, APP_NAME=DEPLOY_APP, NAS="/"))):
            add(case, (step,), {"target": "code", "code": f"return {step}()", "params": params})
    recorder = ConnectionRecorder(FOREIGN_REGISTRY_PORT)
    try:
        records = runner.run_harness(tmp / "harness", runs, timeout=900, parallel=4)
    finally:
        recorder.close()
    return {"canary": canary, "cases": [(kind, case, run, r) for (kind, case, run), r in zip(cases, records)],
            "registry_connections": recorder.connections, "foreign": foreign}


def _of(matrix: dict, kind: str) -> list[tuple]:
    return [(case, run, r) for k, case, run, r in matrix["cases"] if k == kind]


def _refusal_problems(label: str, run: dict, r: dict, var: str, value: str, step: str,
                      needle: str | None = None, quoted: bool = True) -> list[str]:
    """What is wrong with one real-shell run that must end in the CLI's refusal (exit 2)."""
    shs = calls(r, "sh")
    if len(shs) != 1:
        return [f"{label}: expected one sh call, got {len(shs)}: {sh_scripts(r)}"]
    sh, problems = shs[0], []
    # withEnv drops an empty value (EnvVars.override); no hostile value is empty
    if sh["env"].get(var) != value:
        problems.append(f"{label}: the value did not reach the CLI verbatim")
    if sh["args"][0]["script"] != STEP_SCRIPTS[step]:
        problems.append(f"{label}: unexpected script {sh['args'][0]['script']!r}")
    if sh["status"] != 2:
        problems.append(f"{label}: CLI exit {sh['status']} (want 2); stderr: {sh.get('stderr', '')[-300:]}")
    if step == "deployApp" and sh["locks"] != [f"home-mlops-port-{DEPLOY_PORT}"]:
        problems.append(f"{label}: deploy not under its port lock: {sh['locks']}")
    result_file = Path(run["workspace"]) / STEP_FILES[step]
    if not result_file.exists():
        problems.append(f"{label}: no JSON result from the CLI (was the command run at all?)")
    else:
        data = json.loads(result_file.read_text())
        if data.get("ok") is not False or data.get("exit_code") != 2 or (needle or var) not in data.get("error", ""):
            problems.append(f"{label}: unexpected result {data}")
    if r["result"] != "FAILURE" or "exit code 2 (bad input" not in (r["failure"] or ""):
        problems.append(f"{label}: step {r['result']}: {r['failure']!r}")
    # the console: sh -x's trace shows the constant script only; the CLI prints no control
    # character, and a parameter it quotes exactly as typed (rich markup, HTML), never interpreted
    console = sh.get("stderr", "")
    if CONTROL.search(console.replace("\n", "").replace("\t", "")):
        problems.append(f"{label}: a control character reached the console: {console[-300:]!r}")
    if quoted and value in MARKUP and value not in console:
        problems.append(f"{label}: markup not shown as typed: {console[-300:]!r}")
    # the build description is HTML in Jenkins' UI: no value ever goes there
    if value in (r["description"] or ""):
        problems.append(f"{label}: the value reached the build description: {r['description']!r}")
    return problems


def test_the_matrix_is_hostile_for_every_parameter():
    values = hostile_values(Path("/canary/pwned"))
    assert len(values) >= 40 and MARKUP <= set(values)
    for name, validate in VALIDATORS.items():
        for value in values:
            with pytest.raises(HomeMlopsError):
                validate(value.strip(" "))


def test_hostile_parameters_through_all_three_steps_are_refused_and_never_executed(matrix):
    cases = _of(matrix, "param")
    # every step saw every parameter
    assert {(step, name) for (step, name, _), _, _ in cases} == {(s, n) for s in STEPS for n in VALIDATORS}
    problems = []
    for (step, name, value), run, r in cases:
        label = f"{step} {name}={value[:40]!r}"
        problems += _refusal_problems(label, run, r, name, value, step)
        if step == "bentoBuild":
            # through the Jenkinsfile: the first stage fails, the later ones are skipped
            skipped = [c["args"][0] for c in calls(r, "stage") if c.get("skipped")]
            if r["failedStage"] != "Build bento" or skipped != ["Build gateway", "Deploy"]:
                problems.append(f"{label}: failed in {r['failedStage']}, skipped {skipped}")
    assert not matrix["canary"].exists(), "an injected command ran"
    assert not list(matrix["canary"].parent.iterdir())
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} problems)"


def test_hostile_deploy_settings_are_refused_by_the_cli(matrix):
    problems = []
    for (var, value), run, r in _of(matrix, "setting"):
        label = f"{var}={value[:40]!r}"
        if var in STRING_SETTINGS:
            problems += _refusal_problems(label, run, r, var, value, "deployApp",
                                          needle=var.removeprefix("HOME_MLOPS_").lower(), quoted=False)
        elif var in NUMBER_SETTINGS:
            sh = calls(r, "sh")
            if len(sh) != 1 or sh[0]["status"] != 2 or sh[0]["env"].get(var) != value:
                problems.append(f"{label}: {[(c['status'], c.get('stderr', '')[-200:]) for c in sh]}")
            if r["result"] != "FAILURE" or "exit code 2 (bad input" not in (r["failure"] or ""):
                problems.append(f"{label}: step {r['result']}: {r['failure']!r}")
            if not (Path(run["workspace"]) / "home-mlops-deploy.json").exists():
                problems.append(f"{label}: no JSON result")
    assert not matrix["canary"].exists(), "an injected command ran"
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} problems)"


def test_a_hostile_port_is_refused_before_the_lock_and_the_cli(matrix):
    ports = [(value, r) for (var, value), _, r in _of(matrix, "setting") if var == "HOME_MLOPS_PORT"]
    assert len(ports) == len(setting_values(Path("/c")))
    for value, r in ports:
        assert r["result"] == "FAILURE", value
        assert "deployApp: option 'port' must be a TCP port number" in r["failure"], r["failure"]
        assert not calls(r, "sh") and not calls(r, "lock"), value


def test_valid_but_hostile_values_through_all_three_steps(matrix):
    """AR_NAME on a host with no credentials mapping while credentials exist for the platform
    registry; NAS=/ (the whole filesystem as the artifact root)."""
    assert matrix["registry_connections"] == 0, "the CLI contacted the foreign registry"
    foreign = {case[0]: r for case, _, r in _of(matrix, "foreign")}
    nas_root = {case[0]: r for case, _, r in _of(matrix, "nas-root")}
    assert set(foreign) == set(nas_root) == set(STEPS)
    for step in STEPS:
        r = foreign[step]
        (sh,) = calls(r, "sh")
        # the library's default mapping names 127.0.0.1:5000 only: nothing is bound for the foreign port
        assert not calls(r, "withCredentials") and not calls(r, "usernamePassword"), step
        assert not sh["env"].get("REGISTRY_PASSWORD") and not sh["env"].get("REGISTRY_USER"), step
        assert SECRET not in json.dumps(r), step
        assert sh["env"]["AR_NAME"] == matrix["foreign"]
        assert sh["status"] != 0 and r["result"] == "FAILURE", (step, sh["status"])
        assert any(f"registry 127.0.0.1:{FOREIGN_REGISTRY_PORT}: no credentials mapped to this host" in line
                   for line in r["log"]), r["log"]

        r = nas_root[step]
        (sh,) = calls(r, "sh")
        assert sh["env"]["NAS"] == "/"
        # not found, nothing built, nothing deployed
        assert sh["status"] == 3, (step, sh["status"], sh.get("stderr", "")[-500:])
        assert "exit code 3 (not found" in r["failure"], r["failure"]
