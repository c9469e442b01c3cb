"""Jenkins Job Builder definitions (jobs/): rendered offline with `jenkins-jobs test`.

Everything lives in the `home-mlops` folder, which has a list view (`home-mlops/apps`).
Two jobs per app: `home-mlops/<app>` (five validated parameters, APP_NAME fixed to the
app, the Jenkinsfile at the one ref of jobs/defaults.yaml, the app's deploy settings as
environment through the EnvInject job property) and `home-mlops/<app>-undeploy`.

Golden XML lives in tests/jjb/golden/<item>.xml (folder items under golden/home-mlops/).
After an intended change, regenerate:
    HOME_MLOPS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/jenkins/test_jjb.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from home_mlops.jenkins import one_ref
from home_mlops.jenkins.client import FOLDER, VIEW

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"
GOLDEN = REPO / "tests" / "jjb" / "golden"
APPS = [
    "tabular-iris-multi-classifier",
    "tabular-iris-lightgbm",
    "tabular-iris-xgboost",
    "tabular-iris-pytorch",
    "tabular-diabetes-regressor",
]
UNDEPLOY_JOBS = [f"{app}-undeploy" for app in APPS]
PARAMETERS = ["APP_NAME", "EXPERIMENT_ID", "RUN_ID", "NAS", "AR_NAME"]
SETTINGS_ENV = {
    "port": "HOME_MLOPS_PORT", "cpus": "HOME_MLOPS_CPUS", "memory": "HOME_MLOPS_MEMORY",
    "ready_timeout": "HOME_MLOPS_READY_TIMEOUT", "target": "HOME_MLOPS_TARGET", "serving": "HOME_MLOPS_SERVING",
}
RESERVED_PORTS = {5000: "the local registry", 8001: "the MLflow UI"}
UPDATE = os.environ.get("HOME_MLOPS_UPDATE_GOLDEN") == "1"


def app_settings(projects: Path) -> dict[str, dict]:
    """Each app's settings with the defaults.yaml defaults filled in, checked by home-mlops itself
    (app_settings.load_apps: types, ranges, one port per app)."""
    from home_mlops.deploy.app_settings import load_apps

    return {name: settings.model_dump(exclude_none=True) for name, settings in load_apps(projects).items()}


def injected_env(root: ET.Element) -> dict[str, str]:
    """The job's EnvInject "Properties Content" as a dict (what the build sees as environment)."""
    content = root.findtext("./properties/EnvInjectJobProperty/info/propertiesContent") or ""
    return dict(line.split("=", 1) for line in content.splitlines() if line.strip())


def jenkins_jobs() -> str:
    for candidate in (Path(sys.executable).parent / "jenkins-jobs", REPO / ".venv" / "bin" / "jenkins-jobs"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("jenkins-jobs")
    if not found:
        pytest.fail("jenkins-jobs not installed (pip install 'jenkins-job-builder>=6,<7' 'setuptools<81')")
    return found


def render(jobs_dir: Path, out: Path) -> dict[str, str]:
    """Every rendered item by its full name (folder/name): jobs, the folder and the view."""
    proc = subprocess.run([jenkins_jobs(), "test", "--config-xml", str(jobs_dir), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {str(p.parent.relative_to(out)): p.read_text() for p in sorted(out.rglob("config.xml"))}


def in_folder(names) -> list[str]:
    return [f"{FOLDER}/{name}" for name in names]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, str]:
    return render(JOBS, tmp_path_factory.mktemp("jjb-out"))


def test_a_build_job_and_an_undeploy_job_per_app_in_the_folder(rendered):
    assert sorted(rendered) == sorted([FOLDER, VIEW] + in_folder(APPS + UNDEPLOY_JOBS))
    assert list(app_settings(JOBS / "projects.yaml")) == APPS
    assert ET.fromstring(rendered[FOLDER]).tag == "com.cloudbees.hudson.plugins.folder.Folder"


def test_the_folder_has_a_list_view_of_the_build_jobs(rendered):
    import re

    view = ET.fromstring(rendered[VIEW])
    assert view.tag == "hudson.model.ListView"
    assert view.findtext("recurse") == "false"  # the folder's own jobs, by their names in the folder
    regex = re.compile(view.findtext("includeRegex"))  # Java's Pattern.matches on the name in the folder
    assert [app for app in APPS if regex.fullmatch(app)] == APPS
    assert not [job for job in UNDEPLOY_JOBS if regex.fullmatch(job)]
    columns = [c.tag for c in view.find("columns")]
    assert "hudson.views.BuildButtonColumn" in columns and "hudson.views.LastSuccessColumn" in columns


def test_jobs_check_out_the_one_ref(rendered):
    """The jobs' SCM and the library version (casc.yaml, from start.sh) are the same ref."""
    one = one_ref.load(JOBS / "defaults.yaml")
    for app in APPS:
        root = ET.fromstring(rendered[f"{FOLDER}/{app}"])
        scm = root.find("definition/scm")
        assert [b.text for b in scm.findall(".//branches/hudson.plugins.git.BranchSpec/name")] == [one.ref]
        assert scm.findtext(".//userRemoteConfigs/hudson.plugins.git.UserRemoteConfig/url") == one.git_url
    # and the ref is set nowhere else in jobs/
    assert sum(f"{one.ref}" == str(v) for p in JOBS.glob("*.yaml") for e in yaml_entries(p)
               for v in (e.get("defaults") or {}).values()) == 1


def yaml_entries(path: Path) -> list[dict]:
    import yaml

    return [e for e in yaml.safe_load(path.read_text()) or [] if isinstance(e, dict)]


def test_every_app_has_a_port_of_its_own():
    settings = app_settings(JOBS / "projects.yaml")  # raises BadInput on a duplicate port
    ports = {app: s.get("port") for app, s in settings.items()}
    assert all(isinstance(p, int) for p in ports.values()), f"every app needs a port: {ports}"
    assert len(set(ports.values())) == len(ports), ports
    assert not set(ports.values()) & set(RESERVED_PORTS), ports
    assert ports["tabular-iris-multi-classifier"] == 8000  # the demo app keeps the documented port


def test_a_duplicate_port_is_refused_naming_both_apps(tmp_path):
    from home_mlops.errors import BadInput

    jobs = tmp_path / "jobs"
    shutil.copytree(JOBS, jobs)
    projects = jobs / "projects.yaml"
    text = projects.read_text()
    assert "port: 8003" in text
    projects.write_text(text.replace("port: 8003", "port: 8002"))
    with pytest.raises(BadInput) as err:
        app_settings(projects)
    assert "tabular-iris-lightgbm" in str(err.value) and "tabular-iris-xgboost" in str(err.value)
    assert "8002" in str(err.value)


def test_matches_golden_xml(rendered):
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.rglob("*.xml"):
            old.unlink()
        for name, text in rendered.items():
            (GOLDEN / f"{name}.xml").parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / f"{name}.xml").write_text(text)
    golden = {str(p.relative_to(GOLDEN))[: -len(".xml")]: p.read_text() for p in GOLDEN.rglob("*.xml")}
    assert sorted(golden) == sorted(rendered), "golden set differs; regenerate with HOME_MLOPS_UPDATE_GOLDEN=1"
    for name, text in rendered.items():
        assert text == golden[name], f"{name} differs from tests/jjb/golden/{name}.xml"


@pytest.mark.parametrize("app", APPS)
def test_job_gets_the_app_settings_as_environment(rendered, app):
    root = ET.fromstring(rendered[f"{FOLDER}/{app}"])
    settings = app_settings(JOBS / "projects.yaml")[app]
    env = injected_env(root)
    assert sorted(env) == sorted(SETTINGS_ENV.values())
    for key, var in SETTINGS_ENV.items():
        # what the CLI will parse from the variable is what home-mlops reads from projects.yaml
        parse = type(settings[key])
        assert parse(env[var]) == settings[key], (var, env[var], settings[key])
    prop = root.find("./properties/EnvInjectJobProperty")
    assert prop.findtext("on") == "true"
    # nothing but the properties content: no script, no file, no groovy runs at build start
    info = prop.find("info")
    assert not (info.findtext("scriptContent") or info.findtext("scriptFilePath") or info.findtext("propertiesFilePath"))
    assert not (info.findtext("secureGroovyScript/script") or "").strip()
    assert prop.findtext("overrideBuildParameters") == "false"


def test_per_app_values_differ_where_projects_yaml_says_so(rendered):
    ports = {app: injected_env(ET.fromstring(rendered[f"{FOLDER}/{app}"]))["HOME_MLOPS_PORT"] for app in APPS}
    assert len(set(ports.values())) == len(APPS)
    assert injected_env(ET.fromstring(rendered[f"{FOLDER}/tabular-iris-pytorch"]))["HOME_MLOPS_MEMORY"] == "3g"
    assert injected_env(ET.fromstring(rendered[f"{FOLDER}/tabular-iris-xgboost"]))["HOME_MLOPS_MEMORY"] == "2g"


@pytest.mark.parametrize("app", APPS)
def test_job_has_exactly_the_five_validated_parameters_and_the_jenkinsfile(rendered, app):
    root = ET.fromstring(rendered[f"{FOLDER}/{app}"])
    assert root.tag == "flow-definition"
    definition = root.find("definition")
    assert definition.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"
    assert definition.findtext("scriptPath") == "Jenkinsfile"
    assert definition.find("scm").get("class") == "hudson.plugins.git.GitSCM"
    params = root.findall(".//hudson.model.ParametersDefinitionProperty/parameterDefinitions/*")
    # validated when the build is requested (validating-string-parameter; regexes: test_job_params.py)
    assert [p.tag for p in params] == [
        "hudson.plugins.validating__string__parameter.ValidatingStringParameterDefinition"] * 5
    assert [p.findtext("name") for p in params] == PARAMETERS
    by_name = {p.findtext("name"): p for p in params}
    assert by_name["APP_NAME"].findtext("defaultValue") == app
    assert by_name["APP_NAME"].findtext("regex") == app  # fixed to the job's app
    assert by_name["AR_NAME"].findtext("defaultValue") == "127.0.0.1:5000/home-mlops"
    for name in ("EXPERIMENT_ID", "RUN_ID", "NAS"):
        assert not by_name[name].findtext("defaultValue")
    for p in params:
        assert len(p.findtext("description") or "") > 20, p.findtext("name")
    # builds of one app never overlap (deploy switches the one served pair)
    assert root.find(".//org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty") is not None


@pytest.mark.parametrize("app", APPS)
def test_undeploy_job_undeploys_its_own_app_only(rendered, app):
    root = ET.fromstring(rendered[f"{FOLDER}/{app}-undeploy"])
    assert root.tag == "flow-definition"
    definition = root.find("definition")
    assert definition.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsFlowDefinition"
    assert definition.findtext("sandbox") == "true"
    script = definition.findtext("script")
    assert "undeployApp()" in script and script.startswith("@Library('home-mlops') _")
    # no parameters at all: the app is fixed by the job, never chosen by whoever builds it
    assert root.find(".//hudson.model.ParametersDefinitionProperty") is None
    settings = app_settings(JOBS / "projects.yaml")[app]
    # the target comes with the job: undeployApp binds a kubeconfig only for k8s, and a helper
    # installed from a wheel (the dockerized Jenkins) has no projects.yaml to read it from
    assert injected_env(root) == {"APP_NAME": app, "HOME_MLOPS_PORT": str(settings["port"]),
                                  "HOME_MLOPS_TARGET": settings["target"], "HOME_MLOPS_SERVING": settings["serving"]}
    assert root.find(".//org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty") is not None


def test_undeploy_job_script_runs_the_step_under_the_port_lock(rendered, tmp_path):
    """The undeploy job's inline script, run by the Groovy harness with the job's injected environment."""
    sys.path.insert(0, str(REPO / "tests" / "groovy"))
    import runner

    app = "tabular-iris-lightgbm"
    root = ET.fromstring(rendered[f"{FOLDER}/{app}-undeploy"])
    script = root.find("definition").findtext("script").replace("@Library('home-mlops') _", "")
    (record,) = runner.run_harness(tmp_path, [{
        "name": "undeploy-job", "target": "code", "code": script, "params": {}, "env": injected_env(root),
        "sh": {"rules": [{"match": " undeploy ", "status": 0,
                          "json": {"command": "undeploy", "ok": True, "app": app, "removed": [f"{app}-gateway"]}}]},
    }])
    assert record["result"] == "SUCCESS", record["failure"]
    (sh,) = runner.calls(record, "sh")
    assert sh["args"][0]["script"] == 'rm -f -- "$HOME_MLOPS_JSON" && home-mlops undeploy --app="$APP_NAME" --json "$HOME_MLOPS_JSON"'
    assert sh["env"]["APP_NAME"] == app
    assert sh["locks"] == ["home-mlops-port-8002"]
    assert "REGISTRY_PASSWORD" not in sh["env"] and not runner.calls(record, "withCredentials")
    assert record["description"] == f"undeploy: removed {app}-gateway"
    (archive,) = runner.calls(record, "archiveArtifacts")
    assert archive["files"] == ["home-mlops-undeploy.json"]


def test_no_template_braces_survive(rendered):
    for name, text in rendered.items():
        assert "{{" not in text and "}}" not in text, name
        # doubled braces in the template became single ones, and every {var} was substituted
        short = name.rsplit("/", 1)[-1]
        if short in APPS:
            assert "${AR_NAME}/" + short + "-bento" in text
            assert "[0-9]{1,19}" in text  # the EXPERIMENT_ID regex's quantifier
        elif short in UNDEPLOY_JOBS:
            assert "node {" in text
        for var in ("{app}", "{registry}", "{git-url}", "{ref}", "{port}", "{cpus}", "{memory}", "{ready_timeout}"):
            assert var not in text, (name, var)


def test_adding_an_app_is_one_line(tmp_path):
    jobs = tmp_path / "jobs"
    shutil.copytree(JOBS, jobs)
    projects = jobs / "projects.yaml"
    text = projects.read_text()
    entry = "      - tabular-diabetes-regressor:\n          port: 8005\n"
    assert entry in text
    projects.write_text(text.replace(entry, entry + "      - tabular-wine-classifier: {port: 8006}\n"))
    out = render(jobs, tmp_path / "out")
    assert sorted(out) == sorted([FOLDER, VIEW] + in_folder(
        APPS + UNDEPLOY_JOBS + ["tabular-wine-classifier", "tabular-wine-classifier-undeploy"]))
    root = ET.fromstring(out[f"{FOLDER}/tabular-wine-classifier"])
    params = root.findall(".//hudson.model.ParametersDefinitionProperty/parameterDefinitions/*")
    assert [p.findtext("name") for p in params] == PARAMETERS
    assert params[0].findtext("defaultValue") == "tabular-wine-classifier"
    env = injected_env(root)
    assert env["HOME_MLOPS_PORT"] == "8006" and env["HOME_MLOPS_MEMORY"] == "2g"  # the rest from defaults.yaml
    assert app_settings(projects)["tabular-wine-classifier"]["port"] == 8006


def test_example_ini_holds_no_password():
    text = (JOBS / "jenkins_jobs.ini.example").read_text()
    keys = [line.split("=", 1)[0].strip().lower() for line in text.splitlines()
            if "=" in line and not line.lstrip().startswith("#")]
    assert "url" in keys and "user" in keys
    assert "password" not in keys
