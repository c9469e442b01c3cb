"""The shared-library steps and the Jenkinsfile, run under Debian's Groovy with the
step harness in tests/groovy/ (record mode, plus a real-shell run against a fake CLI).

Every scenario of this module runs in one JVM (module fixture), then each test
asserts on its records.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

import runner  # noqa: E402
from runner import APP, DEPLOY_HOST, PARAMS, REPO, RUN_ID, SECRET, calls, ok_rules, sh_scripts  # noqa: E402

from home_mlops.build.trust import registry_host  # noqa: E402

STEPS = {
    # step: (command, default json file, description label, build step)
    "bentoBuild": ("bento-build", "home-mlops-bento.json", "bento", True),
    "fastapiBuild": ("fastapi-build", "home-mlops-gateway.json", "gateway", True),
    "deployApp": ("deploy", "home-mlops-deploy.json", "deploy", False),
}
COMMON_KNOWN = ["app", "ensureHelper", "experimentId", "from", "helperPath", "helperSpec", "jsonFile", "nas",
                "registry", "registryCredentials", "runId", "trackingUri"]
DEPLOY_SETTINGS = {"port": "HOME_MLOPS_PORT", "bind": "HOME_MLOPS_BIND", "cpus": "HOME_MLOPS_CPUS",
                   "memory": "HOME_MLOPS_MEMORY", "readyTimeout": "HOME_MLOPS_READY_TIMEOUT",
                   "target": "HOME_MLOPS_TARGET", "serving": "HOME_MLOPS_SERVING"}
KNOWN = {
    "bentoBuild": sorted(COMMON_KNOWN + ["force", "push"]),
    "fastapiBuild": sorted(COMMON_KNOWN + ["force", "push"]),
    "deployApp": sorted(COMMON_KNOWN + list(DEPLOY_SETTINGS) + ["kubeconfigCredentials", "milestone"]),
    "undeployApp": sorted(["app", "ensureHelper", "helperPath", "helperSpec", "jsonFile", "kubeconfigCredentials", "port"]),
}
UNDEPLOY_SCRIPT = 'rm -f -- "$HOME_MLOPS_JSON" && home-mlops undeploy --app="$APP_NAME" --json "$HOME_MLOPS_JSON"'
APP_ENV = {"HOME_MLOPS_PORT": "8003", "HOME_MLOPS_CPUS": "0.5", "HOME_MLOPS_MEMORY": "1g",
           "HOME_MLOPS_READY_TIMEOUT": "240", "HOME_MLOPS_TARGET": "docker", "HOME_MLOPS_SERVING": "bento+gateway"}
# image references and the registry host both sides must compute (home_mlops.build.registry.registry_host)
REFS = ["127.0.0.1:5000/home-mlops", "127.0.0.1:5999/x", "localhost/x", "localhost", "docker.io/team",
        "team/models", "models", "ghcr.io/org/team", "europe-west1-docker.pkg.dev/p/models", "[::1]:5000/x",
        "evil.example/127.0.0.1:5000/x", "127.0.0.1:5000", "", "MyHost/x", "Index.Docker.io/team/x",
        "index.docker.io/team/x", "GHCR.io/org/x"]
TRACKING = "http://127.0.0.1:8001"
MODELS_URI = "models:/house-prices@champion"
# A port outside every test module's range: nothing listens there, even with tests running in parallel.
NOTHING_LISTENS_PORT = 19690
NOTHING_LISTENS = f"http://127.0.0.1:{NOTHING_LISTENS_PORT}"
FAKE_CLI = """#!/usr/bin/env bash
# A stand-in for home-mlops: records its argv and environment, then behaves per FAKE_MODE.
cmd="$1"
printf '%s\\n' "$@" > "fake-argv-$cmd.txt"
env > "fake-env-$cmd.txt"
json=""
while [ $# -gt 0 ]; do [ "$1" = --json ] && json="$2"; shift; done
case "${FAKE_MODE:-ok}" in
  ok) printf '{"command": "%s", "ok": true, "image": "fake/%s-%s:t", "digest": "sha256:fake", "url": "http://127.0.0.1:8000", "run_id": "%s"}' \\
        "$cmd" "$APP_NAME" "$cmd" "$RUN_ID" > "$json"; exit 0 ;;
  silent-fail) exit 3 ;;
esac
"""


def _scenarios(tmp: Path) -> dict[str, dict]:
    env = {"MLFLOW_TRACKING_URI": TRACKING}
    s: dict[str, dict] = {}
    for step in STEPS:
        s[f"defaults-{step}"] = {"target": "code", "code": f"return {step}()", "env": env,
                                 "sh": {"rules": ok_rules()}}
    s["options-bento"] = {
        "target": "code", "env": env, "sh": {"rules": ok_rules()},
        "code": "return bentoBuild(app: 'other-app', experimentId: 42, runId: 'ffffffffffffffffffffffffffffffff', "
                "nas: 'gs://bucket/mlruns', registry: 'docker.io/team', trackingUri: 'http://tracking:5000', "
                "push: false, force: true, registryCredentials: [:], jsonFile: 'out/bento.json')",
    }
    s["options-deploy-helper"] = {
        "target": "code", "env": env, "sh": {"rules": ok_rules()},
        "code": "return deployApp(helperPath: '/opt/hm/bin/home-mlops', registryCredentials: ['127.0.0.1:5000': 'other-creds'])",
        "credentials": {"other-creds": {"user": "u2", "password": "other-" + SECRET}},
    }
    # registry credentials: bound only for AR_NAME's host, from the step option, the Jenkins-wide
    # env var or the library default (issue 9)
    for name, registry in [("foreign-port", "127.0.0.1:5999/x"), ("foreign-host", "evil.example/127.0.0.1:5000/x"),
                           ("foreign-hub", "home-mlops")]:
        for step in STEPS:
            s[f"creds-{name}-{step}"] = {"target": "code", "env": env, "sh": {"rules": ok_rules()},
                                         "code": f"return {step}(registry: '{registry}')"}
    s["creds-global-mapping"] = {
        "target": "code", "sh": {"rules": ok_rules()}, "code": "return bentoBuild(registry: 'ghcr.io/org/team')",
        "env": dict(env, HOME_MLOPS_REGISTRY_CREDENTIALS="ghcr.io=gh-creds, 127.0.0.1:5000=local-creds"),
        "credentials": {"gh-creds": {"user": "gh", "password": "gh-" + SECRET}},
    }
    s["creds-global-mapping-local"] = {
        "target": "code", "sh": {"rules": ok_rules()}, "code": "return deployApp()",
        "env": dict(env, HOME_MLOPS_REGISTRY_CREDENTIALS="ghcr.io=gh-creds 127.0.0.1:5000=local-creds"),
        "credentials": {"local-creds": {"user": "lc", "password": "local-" + SECRET}},
    }
    s["creds-global-mapping-empty"] = {"target": "code", "sh": {"rules": ok_rules()}, "code": "return bentoBuild()",
                                       "env": dict(env, HOME_MLOPS_REGISTRY_CREDENTIALS="")}
    s["creds-hub-mapping"] = {"target": "code", "sh": {"rules": ok_rules()},
                              "code": "return fastapiBuild(registry: 'myteam/models', "
                                      "registryCredentials: ['Index.Docker.io': 'hub-creds', 'myteam': 'wrong'])",
                              "credentials": {"hub-creds": {"user": "hub", "password": "hub-" + SECRET}}}
    s["creds-no-push"] = {"target": "code", "env": env, "sh": {"rules": ok_rules()},
                          "code": "return bentoBuild(push: false)"}
    s["creds-bad-global"] = {"target": "code", "sh": {"rules": ok_rules()}, "code": "return bentoBuild()",
                             "env": dict(env, HOME_MLOPS_REGISTRY_CREDENTIALS="127.0.0.1:5000")}
    s["creds-bad-option"] = {"target": "code", "env": env, "sh": {"rules": ok_rules()},
                             "code": "return bentoBuild(registryCredentials: ['127.0.0.1:5000': 'id with space'])"}
    s["creds-option-not-a-map"] = {"target": "code", "env": env, "sh": {"rules": ok_rules()},
                                   "code": "return bentoBuild(registryCredentials: 'home-mlops-registry')"}
    s["registry-host-parity"] = {
        "target": "code",
        "code": "return " + json.dumps(REFS).replace('"', "'") + ".collect { io.homemlops.RegistryCredentials.host(it) }",
    }
    # per-app deploy settings (HOME_MLOPS_* from the job's environment) and the port lock (issue 13)
    s["deploy-settings-env"] = {"target": "code", "env": dict(env, **APP_ENV), "sh": {"rules": ok_rules()},
                                "code": "return deployApp()"}
    s["deploy-settings-options"] = {"target": "code", "env": dict(env, **APP_ENV), "sh": {"rules": ok_rules()},
                                    "code": "return deployApp(port: '08150', memory: '512m', bind: '127.0.0.1')"}
    s["deploy-no-port"] = {"target": "code", "env": env, "sh": {"rules": ok_rules()}, "code": "return deployApp()"}
    s["deploy-bad-port"] = {"target": "code", "env": dict(env, HOME_MLOPS_PORT="8000 && touch /tmp/x"),
                            "sh": {"rules": ok_rules()}, "code": "return deployApp()"}
    s["build-ignores-deploy-settings"] = {"target": "code", "env": dict(env, **APP_ENV), "sh": {"rules": ok_rules()},
                                          "code": "return bentoBuild()"}
    undeploy_rule = {"match": " undeploy ", "status": 0,
                     "json": {"command": "undeploy", "ok": True, "app": APP, "removed": [f"{APP}-gateway", f"{APP}-bento"]}}
    # a k8s deploy gets the Jenkins-wide kubeconfig credential as KUBECONFIG; a docker one never
    kube = {"HOME_MLOPS_TARGET": "k8s", "HOME_MLOPS_KUBECONFIG_CREDENTIALS": "kube-creds"}
    kube_creds = {"kube-creds": {"path": "/var/jenkins/secrets/kubeconfig-1"},
                  "home-mlops-registry": {"user": "ci-user", "password": SECRET}}
    s["deploy-k8s-kubeconfig"] = {"target": "code", "env": dict(env, **kube), "sh": {"rules": ok_rules()},
                                  "code": "return deployApp()", "credentials": kube_creds}
    s["undeploy-k8s-kubeconfig"] = {"target": "code", "env": dict(env, **kube), "credentials": kube_creds,
                                    "sh": {"rules": [undeploy_rule]}, "code": "return undeployApp()"}
    s["deploy-docker-no-kubeconfig"] = {"target": "code", "env": dict(env, HOME_MLOPS_KUBECONFIG_CREDENTIALS="kube-creds"),
                                        "sh": {"rules": ok_rules()}, "code": "return deployApp()"}
    s["undeploy-defaults"] = {"target": "code", "env": dict(env, **APP_ENV), "sh": {"rules": [undeploy_rule]},
                              "code": "return undeployApp()"}
    s["undeploy-nothing"] = {"target": "code", "env": env, "code": "return undeployApp(app: 'hmt-a-none')",
                             "sh": {"rules": [dict(undeploy_rule, json={"command": "undeploy", "ok": True,
                                                                         "app": "hmt-a-none", "removed": []})]}}
    s["undeploy-rejects-run-id"] = {"target": "code", "code": "undeployApp(runId: 'x')", "sh": {"rules": [undeploy_rule]}}
    s["undeploy-missing-app"] = {"target": "code", "code": "undeployApp()", "params": {}, "sh": {"rules": [undeploy_rule]}}
    s["ensure-helper"] = {
        "target": "code", "env": env, "sh": {"rules": ok_rules()},
        "code": "return bentoBuild(ensureHelper: true, helperSpec: '/srv/home-mlops')",
    }
    s["unknown-option"] = {"target": "code", "code": "bentoBuild(foo: 'bar')", "sh": {"rules": ok_rules()}}
    s["deploy-rejects-push"] = {"target": "code", "code": "deployApp(push: true)", "sh": {"rules": ok_rules()}}
    s["bad-type"] = {"target": "code", "code": "fastapiBuild(push: 'yes')", "sh": {"rules": ok_rules()}}
    s["missing-required"] = {"target": "code", "code": "bentoBuild()", "params": {}, "sh": {"rules": ok_rules()}}
    s["missing-run-id"] = {"target": "code", "code": "deployApp()",
                           "params": {k: v for k, v in PARAMS.items() if k != "RUN_ID"}, "sh": {"rules": ok_rules()}}
    s["params-from-env"] = {"target": "code", "code": "return bentoBuild()", "params": {},
                            "env": dict(PARAMS, MLFLOW_TRACKING_URI=TRACKING), "sh": {"rules": ok_rules()}}
    s["missing-credentials"] = {"target": "code", "code": "bentoBuild()", "credentials": {},
                                "sh": {"rules": ok_rules()}}
    s["pipeline-ok"] = {"target": "jenkinsfile", "env": dict(env, **APP_ENV), "sh": {"rules": ok_rules()}}
    hostile_params = dict(PARAMS, RUN_ID='$(touch /tmp/pwned)"; echo hostile', NAS="`id`; rm -rf /")
    s["pipeline-hostile-record"] = {"target": "jenkinsfile", "env": env, "params": hostile_params,
                                    "sh": {"rules": ok_rules()}}
    for stage, match, status, message in [
        ("Build bento", " bento-build ", 4, "bentoml build failed: no module named 'lightgbm'"),
        ("Build gateway", " fastapi-build ", 5, "registry 127.0.0.1:5000 refused the credentials"),
        ("Deploy", " deploy ", 6, "gateway health check failed; rolled back to run abc"),
    ]:
        rules = [r for r in ok_rules() if r["match"] != match]
        rules.insert(0, {"match": match, "status": status,
                         "json": {"command": match.strip(), "ok": False, "exit_code": status, "error": message}})
        s[f"pipeline-fail-{status}"] = {"target": "jenkinsfile", "env": env, "sh": {"rules": rules},
                                        "expect": [stage, status, message]}
    s["pipeline-fail-no-json"] = {"target": "jenkinsfile", "env": env,
                                  "sh": {"rules": [{"match": " bento-build ", "status": 7}]}}
    s["pipeline-fail-exit0-no-json"] = {"target": "jenkinsfile", "env": env,
                                        "sh": {"rules": [{"match": " bento-build ", "status": 0}]}}
    # Real shell against a fake CLI: the env really reaches the process, stale results are removed.
    fake_bin = tmp / "fake-bin"
    fake_bin.mkdir(parents=True, exist_ok=True)
    (fake_bin / "home-mlops").write_text(FAKE_CLI)
    (fake_bin / "home-mlops").chmod(0o755)
    real_env = dict(env, PATH=f"{fake_bin}:/usr/bin:/bin")
    s["real-ok"] = {"target": "jenkinsfile", "mode": "real", "env": real_env}
    stale_ws = tmp / "stale-ws"
    stale_ws.mkdir(parents=True, exist_ok=True)
    (stale_ws / "home-mlops-bento.json").write_text(json.dumps({"ok": True, "image": "stale:old"}))
    s["real-stale"] = {"target": "jenkinsfile", "mode": "real", "workspace": str(stale_ws),
                       "env": dict(real_env, FAKE_MODE="silent-fail")}
    s["real-ensure-helper"] = {"target": "code", "mode": "real", "env": real_env,
                               "code": "return bentoBuild(ensureHelper: true)"}
    s["real-ensure-helper-missing"] = {"target": "code", "mode": "real", "env": dict(real_env, PATH="/usr/bin:/bin"),
                                       "code": "return bentoBuild(ensureHelper: true)"}
    # Real shell against the real CLI (no terminal, as under Jenkins): what reaches the console.
    cli_env = dict(env, PATH=f"{runner.VENV_BIN}:/usr/bin:/bin", HOME_MLOPS_HOME=str(tmp / "real-cli-state"))
    # a tracking server on a port no test serves on (outside every test's range): exit 7, quickly
    s["real-cli-unavailable"] = {"target": "code", "mode": "real", "code": "return bentoBuild()",
                                 "env": dict(cli_env, MLFLOW_TRACKING_URI=NOTHING_LISTENS)}
    s["real-cli-undeploy"] = {"target": "code", "mode": "real", "env": cli_env,
                              "code": "return undeployApp(app: 'hmt-f-none')"}
    # a registered model version as RUN_ID (issue 15): through the Jenkinsfile, and accepted by the real CLI
    s["pipeline-models-uri"] = {"target": "jenkinsfile", "env": env, "params": dict(PARAMS, RUN_ID=MODELS_URI),
                                "sh": {"rules": ok_rules()}}
    s["real-cli-models-uri"] = {"target": "code", "mode": "real", "code": f"return bentoBuild(runId: '{MODELS_URI}')",
                                "env": dict(cli_env, MLFLOW_TRACKING_URI=NOTHING_LISTENS)}
    s["real-cli-models-uri-hostile"] = {"target": "code", "mode": "real", "code": "return bentoBuild(runId: 'models:/x@v1')",
                                        "env": dict(cli_env, MLFLOW_TRACKING_URI=NOTHING_LISTENS)}
    for name, scenario in s.items():
        scenario["name"] = name
    return s


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("groovy-steps")
    scenarios = _scenarios(tmp)
    runs = [{k: v for k, v in sc.items() if k != "expect"} for sc in scenarios.values()]
    for i, run in enumerate(runs):
        run.setdefault("workspace", str(tmp / f"ws-{i}"))
    records = runner.run_harness(tmp, copy.deepcopy(runs), parallel=2)
    out = {r["name"]: r for r in records}
    for name, sc in scenarios.items():
        out[name]["expect"] = sc.get("expect")
        out[name]["workspace"] = runs[list(scenarios).index(name)]["workspace"]
    return out


def _sh(record: dict) -> dict:
    shs = calls(record, "sh")
    assert len(shs) == 1, [c["args"] for c in shs]
    return shs[0]


@pytest.mark.parametrize("step", list(STEPS))
def test_step_runs_constant_script_with_values_in_env(rec, step):
    command, json_file, label, build = STEPS[step]
    r = rec[f"defaults-{step}"]
    assert r["result"] == "SUCCESS", r["failure"]
    sh = _sh(r)
    assert sh["args"][0] == {
        "script": f'rm -f -- "$HOME_MLOPS_JSON" && home-mlops {command} --json "$HOME_MLOPS_JSON"',
        "returnStatus": True,
    }
    env = sh["env"]
    for key, value in PARAMS.items():
        assert env.get(key, "") == value
    # withEnv drops an empty value (EnvVars.override): the CLI sees NAS unset, as under Jenkins
    assert "NAS" not in env
    assert env["MLFLOW_TRACKING_URI"] == TRACKING
    assert env["HOME_MLOPS_JSON"] == json_file
    # credentials bound by withCredentials around the sh, with the documented names
    assert env["REGISTRY_USER"] == "ci-user" and env["REGISTRY_PASSWORD"] == SECRET
    # deploy holds the port lock (no port set here: the CLI picks it), builds hold none
    assert sh["locks"] == (["home-mlops-port-default"] if step == "deployApp" else [])
    (up,) = calls(r, "usernamePassword")
    assert up["args"][0] == {"credentialsId": "home-mlops-registry", "usernameVariable": "REGISTRY_USER",
                             "passwordVariable": "REGISTRY_PASSWORD"}
    (with_env,) = calls(r, "withEnv")
    assert with_env["args"][0][:5] == [f"{k}={v}" for k, v in PARAMS.items()]
    # the result file is read back (plain maps, real nulls) and returned as a map
    assert calls(r, "readJSON")[0]["args"][0] == {"file": json_file, "returnPojo": True}
    assert r["returned"]["ok"] is True
    # nothing leaks outside the step: the environment is restored after it
    assert "REGISTRY_PASSWORD" not in calls(r, "readJSON")[0]["env"]


def test_options_override_params_and_switch_flags(rec):
    r = rec["options-bento"]
    assert r["result"] == "SUCCESS", r["failure"]
    sh = _sh(r)
    assert sh["args"][0]["script"] == (
        'rm -f -- "$HOME_MLOPS_JSON" && home-mlops bento-build --json "$HOME_MLOPS_JSON" --no-push --force')
    env = sh["env"]
    assert env["APP_NAME"] == "other-app" and env["EXPERIMENT_ID"] == "42"
    assert env["RUN_ID"] == "f" * 32 and env["NAS"] == "gs://bucket/mlruns" and env["AR_NAME"] == "docker.io/team"
    assert env["MLFLOW_TRACKING_URI"] == "http://tracking:5000"
    assert env["HOME_MLOPS_JSON"] == "out/bento.json"
    # registryCredentials: [:] (and --no-push) means no withCredentials at all
    assert not calls(r, "withCredentials") and "REGISTRY_PASSWORD" not in env
    assert calls(r, "readJSON")[0]["args"][0] == {"file": "out/bento.json", "returnPojo": True}


def test_helper_path_and_other_credentials(rec):
    r = rec["options-deploy-helper"]
    assert r["result"] == "SUCCESS", r["failure"]
    sh = _sh(r)
    assert sh["args"][0]["script"] == 'rm -f -- "$HOME_MLOPS_JSON" && "$HOME_MLOPS_BIN" deploy --json "$HOME_MLOPS_JSON"'
    assert sh["env"]["HOME_MLOPS_BIN"] == "/opt/hm/bin/home-mlops"
    assert sh["env"]["REGISTRY_PASSWORD"] == "other-" + SECRET
    assert calls(r, "usernamePassword")[0]["args"][0]["credentialsId"] == "other-creds"


def test_ensure_helper_writes_resource_and_runs_it_single_quoted(rec):
    r = rec["ensure-helper"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert calls(r, "libraryResource")[0]["args"] == ["io/homemlops/ensure-helper.sh"]
    resource = (REPO / "resources/io/homemlops/ensure-helper.sh").read_text()
    assert calls(r, "writeFile")[0]["args"][0] == {"file": ".home-mlops/ensure-helper.sh", "length": len(resource)}
    ensure, cli = calls(r, "sh")
    assert ensure["args"][0]["script"] == "bash .home-mlops/ensure-helper.sh"
    assert ensure["env"]["HOME_MLOPS_SPEC"] == "/srv/home-mlops"
    assert cli["args"][0]["script"].startswith('rm -f -- "$HOME_MLOPS_JSON" && "$HOME_MLOPS_BIN" bento-build')
    assert cli["env"]["HOME_MLOPS_BIN"] == ".home-mlops/bin/home-mlops"


def _known_text(step: str) -> str:
    return "known: " + ", ".join(KNOWN[step])


@pytest.mark.parametrize("name, step, needle", [
    ("unknown-option", "bentoBuild", "bentoBuild: unknown option 'foo'"),
    ("deploy-rejects-push", "deployApp", "deployApp: unknown option 'push'"),
    ("bad-type", "fastapiBuild", "fastapiBuild: option 'push' must be true or false"),
    ("missing-required", "bentoBuild", "bentoBuild: missing required option 'app' (pass app: or set the job parameter APP_NAME)"),
    ("missing-run-id", "deployApp", "deployApp: missing required option 'runId' (pass runId: or set the job parameter RUN_ID)"),
    ("undeploy-rejects-run-id", "undeployApp", "undeployApp: unknown option 'runId'"),
    ("undeploy-missing-app", "undeployApp", "undeployApp: missing required option 'app' (pass app: or set the job parameter APP_NAME)"),
    ("creds-option-not-a-map", "bentoBuild", "bentoBuild: option 'registryCredentials' must be a map, got a String"),
])
def test_option_errors_name_the_option_and_the_known_ones(rec, name, step, needle):
    r = rec[name]
    assert r["result"] == "FAILURE"
    assert needle in r["failure"], r["failure"]
    assert r["failure"].endswith(_known_text(step)), r["failure"]
    assert not calls(r, "sh"), "a rejected step must not run anything"


def test_params_fall_back_to_env(rec):
    r = rec["params-from-env"]
    assert r["result"] == "SUCCESS", r["failure"]
    env = _sh(r)["env"]
    assert env["APP_NAME"] == APP and env["RUN_ID"] == RUN_ID


def _bound(r: dict) -> list[str]:
    return [c["args"][0]["credentialsId"] for c in calls(r, "usernamePassword")]


@pytest.mark.parametrize("name", ["foreign-port", "foreign-host", "foreign-hub"])
@pytest.mark.parametrize("step", list(STEPS))
def test_a_foreign_registry_host_gets_no_credentials(rec, name, step):
    r = rec[f"creds-{name}-{step}"]
    assert r["result"] == "SUCCESS", r["failure"]
    sh = _sh(r)
    assert not calls(r, "withCredentials") and not _bound(r)
    assert "REGISTRY_PASSWORD" not in sh["env"] and "REGISTRY_USER" not in sh["env"]
    assert SECRET not in json.dumps(r["calls"])
    host = registry_host(sh["env"]["AR_NAME"])
    assert any(line.startswith(f"{step}: registry {host}: no credentials mapped to this host, none bound")
               for line in r["log"]), r["log"]


def test_the_jenkins_wide_mapping_binds_by_host(rec):
    r = rec["creds-global-mapping"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert _bound(r) == ["gh-creds"] and _sh(r)["env"]["REGISTRY_PASSWORD"] == "gh-" + SECRET
    r = rec["creds-global-mapping-local"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert _bound(r) == ["local-creds"] and _sh(r)["env"]["REGISTRY_USER"] == "lc"
    # set but empty: no mapping at all, not even the library default
    r = rec["creds-global-mapping-empty"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert not _bound(r) and "REGISTRY_PASSWORD" not in _sh(r)["env"]


def test_docker_hub_images_map_to_docker_io(rec):
    r = rec["creds-hub-mapping"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert _bound(r) == ["hub-creds"]


def test_a_build_without_push_binds_nothing(rec):
    r = rec["creds-no-push"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert not _bound(r) and "REGISTRY_PASSWORD" not in _sh(r)["env"]
    assert _sh(r)["args"][0]["script"].endswith(" --no-push")


@pytest.mark.parametrize("name, needle", [
    ("creds-bad-global", "bentoBuild: HOME_MLOPS_REGISTRY_CREDENTIALS: entry '127.0.0.1:5000' has no valid credentials id"),
    ("creds-bad-option", "bentoBuild: option 'registryCredentials' entry '127.0.0.1:5000' has no valid credentials id"),
])
def test_a_malformed_mapping_fails_before_anything_runs(rec, name, needle):
    r = rec[name]
    assert r["result"] == "FAILURE"
    assert needle in r["failure"], r["failure"]
    assert not calls(r, "sh") and not _bound(r)


def test_registry_host_is_parsed_like_the_python_side(rec):
    r = rec["registry-host-parity"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert r["returned"] == [registry_host(ref) for ref in REFS]


def test_deploy_settings_come_from_the_job_environment_under_the_port_lock(rec):
    r = rec["deploy-settings-env"]
    assert r["result"] == "SUCCESS", r["failure"]
    sh = _sh(r)
    for var, value in APP_ENV.items():
        assert sh["env"][var] == value
    (with_env,) = calls(r, "withEnv")
    assert [e for e in with_env["args"][0] if e.startswith("HOME_MLOPS_") and not e.startswith("HOME_MLOPS_JSON")] == [
        f"{var}={APP_ENV[var]}" for var in DEPLOY_SETTINGS.values() if var in APP_ENV]
    (lock,) = calls(r, "lock")
    assert lock["args"][0] == {"resource": "home-mlops-port-8003"}
    # the lock is held around the credentials and the CLI, and released after it
    assert sh["locks"] == ["home-mlops-port-8003"]
    assert calls(r, "withCredentials")[0]["locks"] == ["home-mlops-port-8003"]
    assert calls(r, "readJSON")[0]["locks"] == []
    assert sh["args"][0]["script"] == 'rm -f -- "$HOME_MLOPS_JSON" && home-mlops deploy --json "$HOME_MLOPS_JSON"'


def test_deploy_setting_options_override_the_environment(rec):
    r = rec["deploy-settings-options"]
    assert r["result"] == "SUCCESS", r["failure"]
    env = _sh(r)["env"]
    assert env["HOME_MLOPS_PORT"] == "08150" and env["HOME_MLOPS_MEMORY"] == "512m"
    assert env["HOME_MLOPS_BIND"] == "127.0.0.1" and env["HOME_MLOPS_CPUS"] == "0.5"
    assert _sh(r)["locks"] == ["home-mlops-port-8150"]  # the number, not its spelling


def test_deploy_without_settings_leaves_the_cli_its_defaults(rec):
    r = rec["deploy-no-port"]
    assert r["result"] == "SUCCESS", r["failure"]
    (with_env,) = calls(r, "withEnv")
    assert not [e for e in with_env["args"][0] if e.split("=")[0] in DEPLOY_SETTINGS.values()]
    assert _sh(r)["locks"] == ["home-mlops-port-default"]


def test_a_port_that_is_not_a_number_fails_before_the_lock(rec):
    r = rec["deploy-bad-port"]
    assert r["result"] == "FAILURE"
    assert "deployApp: option 'port' must be a TCP port number (digits, e.g. 8002), got '8000 && touch /tmp/x'" in r["failure"]
    assert not calls(r, "sh") and not calls(r, "lock")


def test_build_steps_take_no_deploy_settings_and_no_lock(rec):
    r = rec["build-ignores-deploy-settings"]
    assert r["result"] == "SUCCESS", r["failure"]
    (with_env,) = calls(r, "withEnv")
    assert not [e for e in with_env["args"][0] if e.split("=")[0] in DEPLOY_SETTINGS.values()]
    assert not calls(r, "lock")


def test_undeploy_names_the_app_holds_the_port_lock_and_binds_nothing(rec):
    r = rec["undeploy-defaults"]
    assert r["result"] == "SUCCESS", r["failure"]
    sh = _sh(r)
    assert sh["args"][0] == {"script": UNDEPLOY_SCRIPT, "returnStatus": True}
    assert sh["env"]["APP_NAME"] == APP and sh["env"]["HOME_MLOPS_JSON"] == "home-mlops-undeploy.json"
    (with_env,) = calls(r, "withEnv")
    # only the app (and the port of its lock): no run, no registry
    assert [e.split("=")[0] for e in with_env["args"][0]] == ["APP_NAME", "HOME_MLOPS_PORT", "HOME_MLOPS_JSON"]
    assert sh["locks"] == ["home-mlops-port-8003"]
    assert not calls(r, "withCredentials") and "REGISTRY_PASSWORD" not in sh["env"]
    assert r["returned"]["removed"] == [f"{APP}-gateway", f"{APP}-bento"]
    assert r["description"] == f"undeploy: removed {APP}-gateway, {APP}-bento"
    r = rec["undeploy-nothing"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert _sh(r)["env"]["APP_NAME"] == "hmt-a-none"
    assert r["description"] == "undeploy: nothing was deployed for hmt-a-none"


def test_missing_credentials_fail_without_running_the_cli(rec):
    r = rec["missing-credentials"]
    assert r["result"] == "FAILURE"
    assert "home-mlops-registry" in r["failure"]
    assert not calls(r, "sh")


def test_pipeline_stage_order_archive_description_and_summary(rec):
    r = rec["pipeline-ok"]
    assert r["result"] == "SUCCESS", r["failure"]
    stages = [c["args"][0] for c in calls(r, "stage")]
    assert stages == ["Build bento", "Build gateway", "Deploy"]
    commands = [re.search(r" (bento-build|fastapi-build|deploy) ", s).group(1) for s in sh_scripts(r)]
    assert commands == ["bento-build", "fastapi-build", "deploy"]
    assert [c["stage"] for c in calls(r, "sh")] == stages
    # only the Deploy stage runs under the app's port lock
    assert [c["locks"] for c in calls(r, "sh")] == [[], [], ["home-mlops-port-8003"]]
    assert [c["args"][0] for c in calls(r, "post")] == ["always", "success"]
    (archive,) = calls(r, "archiveArtifacts")
    assert archive["files"] == ["home-mlops-bento.json", "home-mlops-deploy.json", "home-mlops-gateway.json"]
    reg = "127.0.0.1:5000/home-mlops"
    assert r["description"] == "<br>\n".join([
        f"bento: {reg}/{APP}-bento:r-0123456789ab (sha256:{'b' * 64})",
        f"gateway: {reg}/{APP}-gateway:r-0123456789ab (sha256:{'g' * 64})",
        f"deploy: http://{DEPLOY_HOST}:8000 (run {RUN_ID})",
    ])
    summary = "\n".join(r["log"])
    assert f"home-mlops: deployed {APP}" in summary
    assert f"{reg}/{APP}-bento:r-0123456789ab @ sha256:{'b' * 64}" in summary
    assert f"{reg}/{APP}-gateway:r-0123456789ab @ sha256:{'g' * 64}" in summary
    assert f"url:           http://{DEPLOY_HOST}:8000/predict" in summary
    assert "on this host:  http://127.0.0.1:8000/predict" in summary


@pytest.mark.parametrize("status", [4, 5, 6])
def test_failing_stage_stops_later_stages_and_reports_reason(rec, status):
    r = rec[f"pipeline-fail-{status}"]
    stage, _, message = r["expect"]
    order = ["Build bento", "Build gateway", "Deploy"]
    assert r["result"] == "FAILURE"
    assert r["failedStage"] == stage
    ran = [c["args"][0] for c in calls(r, "stage") if not c.get("skipped")]
    skipped = [c["args"][0] for c in calls(r, "stage") if c.get("skipped")]
    assert ran == order[: order.index(stage) + 1]
    assert skipped == order[order.index(stage) + 1:]
    assert len(sh_scripts(r)) == len(ran)
    meaning = {4: "build failed", 5: "push failed", 6: "deploy failed"}[status]
    assert f"failed with exit code {status} ({meaning}" in r["failure"]
    assert r["failure"].endswith(message)
    assert [c["args"][0] for c in calls(r, "post")] == ["always", "failure"]
    failure_echo = calls(r, "echo")[-1]["args"][0]
    assert failure_echo.startswith(f"home-mlops: FAILED in stage '{stage}'")
    assert message in failure_echo
    label = {4: "bento", 5: "gateway", 6: "deploy"}[status]
    assert r["description"].split("<br>\n")[-1] == f"{label}: FAILED (exit {status})"


def test_failure_without_result_file_says_so(rec):
    r = rec["pipeline-fail-no-json"]
    assert r["failedStage"] == "Build bento"
    assert "exit code 7 (a service home-mlops needs did not answer" in r["failure"]
    assert "no result file home-mlops-bento.json" in r["failure"]
    r = rec["pipeline-fail-exit0-no-json"]
    assert r["result"] == "FAILURE"
    assert "exited 0 but wrote no result file" in r["failure"]


def test_secret_and_values_never_in_sh_scripts(rec):
    checked = 0
    for r in rec.values():
        for script in sh_scripts(r):
            checked += 1
            assert SECRET not in script
            # no value at all: only constant pieces
            assert script in {
                f'rm -f -- "$HOME_MLOPS_JSON" && {exe} {cmd} --json "$HOME_MLOPS_JSON"{flags}'
                for exe in ("home-mlops", '"$HOME_MLOPS_BIN"')
                for cmd in ("bento-build", "fastapi-build", "deploy")
                for flags in ("", " --no-push", " --force", " --no-push --force")
            } | {"bash .home-mlops/ensure-helper.sh", UNDEPLOY_SCRIPT}, script
        for c in calls(r, "withEnv") + calls(r, "echo") + calls(r, "error"):
            assert SECRET not in json.dumps(c["args"])
        assert SECRET not in (r["description"] or "")
    assert checked > 20
    # hostile values are passed through env verbatim, never into the script
    r = rec["pipeline-hostile-record"]
    sh = calls(r, "sh")[0]
    assert sh["env"]["RUN_ID"] == '$(touch /tmp/pwned)"; echo hostile'
    assert sh["env"]["NAS"] == "`id`; rm -rf /"


def test_no_step_calls_properties_or_defines_parameters(rec):
    for r in rec.values():
        for c in r["calls"]:
            assert c["step"] not in ("properties", "parameters") and not c["step"].startswith("parameters."), c
    # and statically, for code paths the scenarios above might not reach
    sources = [REPO / "Jenkinsfile", *(REPO / "vars").glob("*.groovy"), *(REPO / "src").rglob("*.groovy")]
    for path in sources:
        code = re.sub(r"//.*|/\*.*?\*/", "", path.read_text(), flags=re.S)
        assert not re.search(r"\bproperties\s*\(", code), path
        assert not re.search(r"\bparameters\s*\{", code), path


def test_real_shell_passes_values_through_the_environment(rec):
    r = rec["real-ok"]
    assert r["result"] == "SUCCESS", (r["failure"], [c.get("stderr") for c in calls(r, "sh")])
    ws = Path(r["workspace"])
    argv = (ws / "fake-argv-bento-build.txt").read_text().splitlines()
    assert argv == ["bento-build", "--json", "home-mlops-bento.json"]
    env = dict(line.split("=", 1) for line in (ws / "fake-env-deploy.txt").read_text().splitlines() if "=" in line)
    assert env["APP_NAME"] == APP and env["RUN_ID"] == RUN_ID and env["REGISTRY_PASSWORD"] == SECRET
    assert env["MLFLOW_TRACKING_URI"] == TRACKING
    assert f"fake/{APP}-deploy:t" not in r["description"]
    assert f"bento: fake/{APP}-bento-build:t (sha256:fake)" in r["description"]


def test_real_shell_never_reads_a_stale_result(rec):
    r = rec["real-stale"]
    assert r["result"] == "FAILURE"
    assert "exit code 3 (not found" in r["failure"]
    assert "no result file" in r["failure"]
    assert "stale" not in (r["description"] or "")


def test_real_shell_ensure_helper(rec):
    r = rec["real-ensure-helper"]
    assert r["result"] == "SUCCESS", (r["failure"], [c.get("stderr") for c in calls(r, "sh")])
    link = Path(r["workspace"]) / ".home-mlops/bin/home-mlops"
    assert link.is_symlink() and link.resolve().name == "home-mlops"
    r = rec["real-ensure-helper-missing"]
    assert r["result"] == "FAILURE"
    assert "could not provide home-mlops on this agent (ensure-helper.sh exit 2)" in r["failure"]
    assert len(calls(r, "sh")) == 1


@pytest.mark.parametrize("step", list(KNOWN))
def test_help_page_documents_every_option(step):
    text = (REPO / "vars" / f"{step}.txt").read_text()
    assert text.lstrip().startswith("<"), "an HTML fragment"
    for option in KNOWN[step]:
        assert f"<code>{option}</code>" in text, option
    assert "properties" not in text or "never" in text


STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[([a-z-]+)\] (.*)$")


def _cli_lines(r) -> list[tuple[str, str]]:
    """The real CLI's lines in the sh step's stderr (the Jenkins console), without sh -x's `+ ...` lines."""
    stderr = _sh(r)["stderr"]
    assert SECRET not in stderr and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", stderr)
    lines = [line for line in stderr.splitlines() if not line.startswith("+ ")]
    assert lines and all(STAMPED.match(line) for line in lines), lines
    return [STAMPED.match(line).groups() for line in lines]


def test_real_cli_failure_reaches_the_console_as_plain_lines(rec):
    r = rec["real-cli-unavailable"]
    assert r["result"] == "FAILURE"
    lines = _cli_lines(r)
    assert {stage for stage, _ in lines} == {"bento-build"}
    assert any(text.startswith("error: ") for _, text in lines)
    result = json.loads((Path(r["workspace"]) / "home-mlops-bento.json").read_text())
    assert result["exit_code"] == 7, result
    assert result["summary"].startswith("home-mlops: FAILED in stage 'bento-build': ")
    assert lines[-1][1] == f"summary: {result['summary']} ({result['seconds']:.1f} s)"


def test_real_cli_summary_is_the_build_description(rec):
    from conftest import docker_reason

    if docker_reason():
        pytest.skip(docker_reason())
    r = rec["real-cli-undeploy"]
    assert r["result"] == "SUCCESS", (r["failure"], _sh(r).get("stderr"))
    summary = r["returned"]["summary"]
    assert summary == r["description"] == "undeploy: nothing was deployed for hmt-f-none"
    assert _cli_lines(r)[-1] == ("undeploy", f"summary: {summary} ({r['returned']['seconds']:.1f} s)")


def test_models_uri_run_id_through_the_jenkinsfile(rec):
    r = rec["pipeline-models-uri"]
    assert r["result"] == "SUCCESS", r["failure"]
    shs = calls(r, "sh")
    assert len(shs) == 3 and all(sh["env"]["RUN_ID"] == MODELS_URI for sh in shs)
    # the real CLI takes the URI past validation: it asks the (absent) tracking server's registry, exit 7
    result = json.loads((Path(rec["real-cli-models-uri"]["workspace"]) / "home-mlops-bento.json").read_text())
    assert result["exit_code"] == 7 and "models:/house-prices@champion" in result["error"], result
    # a reserved alias is refused before any connection, exit 2
    result = json.loads((Path(rec["real-cli-models-uri-hostile"]["workspace"]) / "home-mlops-bento.json").read_text())
    assert result["exit_code"] == 2 and str(NOTHING_LISTENS_PORT) not in json.dumps(result), result


@pytest.mark.parametrize("name", ["deploy-k8s-kubeconfig", "undeploy-k8s-kubeconfig"])
def test_k8s_target_binds_the_kubeconfig_credential(rec, name):
    r = rec[name]
    assert r["result"] == "SUCCESS", r["failure"]
    (binding,) = calls(r, "file")
    assert binding["args"][0] == {"credentialsId": "kube-creds", "variable": "KUBECONFIG"}
    assert _sh(r)["env"]["KUBECONFIG"] == "/var/jenkins/secrets/kubeconfig-1"
    assert "KUBECONFIG" not in calls(r, "readJSON")[0]["env"]


def test_docker_target_binds_no_kubeconfig(rec):
    r = rec["deploy-docker-no-kubeconfig"]
    assert r["result"] == "SUCCESS", r["failure"]
    assert not calls(r, "file") and "KUBECONFIG" not in _sh(r)["env"]
