"""The jobs' UI validation (validating-string-parameter) accepts exactly what the CLI accepts.

Jenkins checks each parameter with Java's Pattern.matches(regex, value) before a build
starts; the regexes come from home_mlops/jenkins/job_params.py, built from params.py's
patterns. Here: every good and hostile value of a corpus gets the same verdict from the
regex (Python's fullmatch; job_params uses only constructs Java reads alike) as from
params.validate_*; the rendered jobs carry exactly these regexes; no regex backtracks
exponentially on a long near-miss.
"""
from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from home_mlops import params
from home_mlops.errors import BadInput
from home_mlops.jenkins import job_params

REPO = Path(__file__).resolve().parents[2]
HEX = "0123456789abcdef0123456789abcdef"

CORPUS = {
    "EXPERIMENT_ID": (lambda v: params.validate_experiment_id(v), [
        "1", "0", "742983529384", "1234567890123456789", "12345678901234567890", "", " 1", "1 ", "1; rm -rf /",
        "abc", "-1", "1.0", "１", "1\n", "$(id)", "<b>1</b>",
    ]),
    "RUN_ID": (lambda v: params.validate_run_id(v, allow_models_uri=True), [
        HEX, HEX.upper(), HEX[:-1], HEX + "0", "", f"{HEX}\n", f"{HEX};id",
        "models:/iris@champion", "models:/iris/3", "models:/iris@latest", "models:/iris@v2", "models:/iris@V2",
        "models:/iris@v2x", "models:/iris/0", "models:/iris/01", "models:/iris", "models:/iris@", "models:/.x@a",
        "models:/my.model_v-1@_a-b", "models:/x/12345678901", "models:/x/1234567890", "models:/a b@c",
        "models:/iris@champion; id", "models:/" + "a" * 128 + "@x", "models:/" + "a" * 129 + "@x",
        "models:/iris@<script>", "models:/iris@" + "a" * 63, "models:/iris@" + "a" * 64,
    ]),
    "NAS": (params.validate_nas, [
        "", "/", "/srv/mlruns", "/srv//mlruns/", "file:///srv/mlruns", "file://srv/mlruns", "file://",
        "gs://bucket", "gs://bucket/", "gs://bucket/prefix/more", "s3://my.bucket-1/p", "gs://Bucket/p",
        "gs://b/p", "gs://bu/p", "ftp://bucket/p", "http://x/y", "srv/mlruns", "../etc", "/srv/../etc",
        "/srv/./x", "/srv/..", "/srv/.", "/srv/...", "/srv/..x", "/srv/x..", "/srv/.hidden", "/srv/a b",
        "/srv/$(id)", "/srv/`id`", "/srv/x;y", "/srv/'x'", '/srv/"x"', "/srv/x\n", "/srv/é", "/a://b",
        "gs://bucket/../x", "gs://bucket//x", "/" + "a" * 1023, "/" + "a" * 1024, "gs://" + "b" * 223 + "/x",
        "gs://" + "b" * 222 + "/x", "/srv/a@b+c=d,e", "s3://bucket/p/<b>",
    ]),
    "AR_NAME": (params.validate_registry, [
        "127.0.0.1:5000/home-mlops", "docker.io/myteam", "europe-west1-docker.pkg.dev/project/models",
        "localhost:5000/a", "[::1]:5000/a", "home-mlops", "a/b/c", "a__b", "a--b", "a.b", "a_b",
        "", "UPPER/case", "a/B", "a:tag", "a@sha256:x", "a/", "/a", "a//b", "a b", "a;b", "a/b:1.0",
        "x" * 255, "x" * 256, "host:99999/a", "host:123456/a", "-host/a", "host-/a", "a/-b", "a/b-", "a._b",
        "127.0.0.1:5000/home-mlops\n",
    ]),
}


def _cli_accepts(validate, value: str) -> bool:
    try:
        validate(value)
    except BadInput:
        return False
    return True


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_ui_regex_and_cli_validator_agree_on_every_value(name):
    validate, values = CORPUS[name]
    pattern = re.compile(job_params.UI_PATTERNS[name])
    disagree = [(v, _cli_accepts(validate, v)) for v in values
                if bool(pattern.fullmatch(v)) != _cli_accepts(validate, v)]
    assert not disagree, f"{name}: (value, CLI verdict) where the UI regex differs: {disagree}"
    verdicts = {_cli_accepts(validate, v) for v in values}
    assert verdicts == {True, False}, f"{name}: the corpus must hold good and bad values"


@pytest.mark.parametrize("app", ["tabular-iris-xgboost", "a", "x" * 63])
def test_app_name_regex_is_the_app_itself(app):
    pattern = re.compile(job_params.app_name(app))
    assert pattern.fullmatch(app)
    for other in ("tabular-iris-lightgbm", app + "x", app[:-1], "", app.upper(), f"{app}\n", ".*"):
        if other != app:
            assert not pattern.fullmatch(other), other
    with pytest.raises(BadInput):
        job_params.app_name("Bad_App")


@pytest.mark.parametrize("name", sorted(job_params.UI_PATTERNS))
def test_no_exponential_backtracking_on_a_long_near_miss(name):
    """A long value that fails only at its last character is refused quickly (Java's matcher
    backtracks like Python's: nested unbounded quantifiers would take minutes here)."""
    near_misses = {
        "EXPERIMENT_ID": "1" * 18 + "x",
        "RUN_ID": "models:/" + "a" * 120 + "@" + "b" * 60 + "!",
        "NAS": "/" + "/".join(["a" * 20] * 45) + "/!",
        "AR_NAME": "a-" * 120 + "A",
    }
    code = ("import re, sys, time; from home_mlops.jenkins import job_params as j; "
            f"p = re.compile(j.UI_PATTERNS[{name!r}]); t = time.monotonic(); "
            f"assert not p.fullmatch({near_misses[name]!r}); print(time.monotonic() - t)")
    # run in a child with a hard timeout: a catastrophic pattern would hang this test, not fail it
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_rendered_jobs_carry_exactly_these_regexes(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([str(Path(sys.executable).with_name("jenkins-jobs")), "test", "--config-xml",
                           str(REPO / "jobs"), "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.parent.name for p in (out / "home-mlops").glob("*/config.xml")
                  if ET.parse(p).getroot().tag == "flow-definition" and not p.parent.name.endswith("-undeploy"))
    assert jobs, "no build job rendered"
    for app in jobs:
        root = ET.parse(out / "home-mlops" / app / "config.xml").getroot()
        definitions = root.findall(".//parameterDefinitions/*")
        assert {d.tag for d in definitions} == {
            "hudson.plugins.validating__string__parameter.ValidatingStringParameterDefinition"}
        regexes = {d.findtext("name"): d.findtext("regex") for d in definitions}
        assert regexes == {"APP_NAME": job_params.app_name(app), **job_params.UI_PATTERNS}, app
        for definition in definitions:
            assert len(definition.findtext("failedValidationMessage") or "") > 20
            # the default value passes its own check (a build with defaults is not refused for them)
            default = definition.findtext("defaultValue") or ""
            if definition.findtext("name") in ("APP_NAME", "AR_NAME", "NAS"):
                assert re.fullmatch(definition.findtext("regex"), default), (app, definition.findtext("name"))
