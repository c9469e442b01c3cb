"""Jenkins Job Builder definitions (jobs/): rendered offline with `jenkins-jobs test`.

Golden XML lives in tests/jjb/golden/<job>.xml. After an intended change, regenerate:
    HOME_MLOPS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_jjb.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
JOBS = REPO / "jobs"
GOLDEN = REPO / "tests" / "jjb" / "golden"
APPS = [
    "tabular-iris-multi-classifier",
    "tabular-iris-lightgbm",
    "tabular-iris-xgboost",
    "tabular-iris-pytorch",
    "tabular-diabetes-regressor",
]
PARAMETERS = ["APP_NAME", "EXPERIMENT_ID", "RUN_ID", "NAS", "AR_NAME"]
UPDATE = os.environ.get("HOME_MLOPS_UPDATE_GOLDEN") == "1"


def jenkins_jobs() -> str:
    for candidate in (Path(sys.executable).parent / "jenkins-jobs", REPO / ".venv" / "bin" / "jenkins-jobs"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("jenkins-jobs")
    if not found:
        pytest.fail("jenkins-jobs not installed (pip install 'jenkins-job-builder>=6,<7' 'setuptools<81')")
    return found


def render(jobs_dir: Path, out: Path) -> dict[str, str]:
    proc = subprocess.run([jenkins_jobs(), "test", str(jobs_dir), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {p.name: p.read_text() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, str]:
    return render(JOBS, tmp_path_factory.mktemp("jjb-out"))


def test_one_job_per_app(rendered):
    assert sorted(rendered) == sorted(APPS)
    listed = yaml.safe_load((JOBS / "projects.yaml").read_text())[0]["project"]["app"]
    assert listed == APPS


def test_matches_golden_xml(rendered):
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*.xml"):
            old.unlink()
        for name, text in rendered.items():
            (GOLDEN / f"{name}.xml").write_text(text)
    golden = {p.stem: p.read_text() for p in GOLDEN.glob("*.xml")}
    assert sorted(golden) == sorted(rendered), "golden set differs; regenerate with HOME_MLOPS_UPDATE_GOLDEN=1"
    for name, text in rendered.items():
        assert text == golden[name], f"{name} differs from tests/jjb/golden/{name}.xml"


@pytest.mark.parametrize("app", APPS)
def test_job_has_exactly_the_five_parameters_and_the_jenkinsfile(rendered, app):
    root = ET.fromstring(rendered[app])
    assert root.tag == "flow-definition"
    definition = root.find("definition")
    assert definition.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"
    assert definition.findtext("scriptPath") == "Jenkinsfile"
    assert definition.find("scm").get("class") == "hudson.plugins.git.GitSCM"
    params = root.findall(".//hudson.model.ParametersDefinitionProperty/parameterDefinitions/*")
    assert [p.tag for p in params] == ["hudson.model.StringParameterDefinition"] * 5
    assert [p.findtext("name") for p in params] == PARAMETERS
    by_name = {p.findtext("name"): p for p in params}
    assert by_name["APP_NAME"].findtext("defaultValue") == app
    assert by_name["AR_NAME"].findtext("defaultValue") == "127.0.0.1:5000/home-mlops"
    for name in ("EXPERIMENT_ID", "RUN_ID", "NAS"):
        assert not by_name[name].findtext("defaultValue")
    for p in params:
        assert len(p.findtext("description") or "") > 20, p.findtext("name")
    # builds of one app never overlap (deploy switches the one served pair)
    assert root.find(".//org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty") is not None


def test_no_template_braces_survive(rendered):
    for name, text in rendered.items():
        assert "{{" not in text and "}}" not in text, name
        # doubled braces in the template became single ones, and every {var} was substituted
        assert "${AR_NAME}/" + name + "-bento" in text
        assert "{app}" not in text and "{registry}" not in text and "{git-url}" not in text


def test_adding_an_app_is_one_line(tmp_path):
    jobs = tmp_path / "jobs"
    shutil.copytree(JOBS, jobs)
    projects = jobs / "projects.yaml"
    text = projects.read_text()
    line = "      - tabular-diabetes-regressor\n"
    assert line in text
    projects.write_text(text.replace(line, line + "      - tabular-wine-classifier\n"))
    out = render(jobs, tmp_path / "out")
    assert sorted(out) == sorted(APPS + ["tabular-wine-classifier"])
    root = ET.fromstring(out["tabular-wine-classifier"])
    params = root.findall(".//hudson.model.ParametersDefinitionProperty/parameterDefinitions/*")
    assert [p.findtext("name") for p in params] == PARAMETERS
    assert params[0].findtext("defaultValue") == "tabular-wine-classifier"


def test_example_ini_holds_no_password():
    text = (JOBS / "jenkins_jobs.ini.example").read_text()
    keys = [line.split("=", 1)[0].strip().lower() for line in text.splitlines()
            if "=" in line and not line.lstrip().startswith("#")]
    assert "url" in keys and "user" in keys
    assert "password" not in keys
