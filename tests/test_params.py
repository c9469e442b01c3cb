"""Unit tests of every job-parameter validator in home_mlops.params (no subprocess)."""
from __future__ import annotations

import pytest

from home_mlops.errors import ExitCode, HomeMlopsError
from home_mlops.params import (
    DEFAULT_REGISTRY,
    JobParams,
    validate_app,
    validate_experiment_id,
    validate_model_name,
    validate_nas,
    validate_registry,
)

RUN = "3f2a9c0d4b5e6f708192a3b4c5d6e7f8"

# Hostile values: every one must be refused by every validator that takes free text.
HOSTILE = [
    "; rm -rf /",
    "$(touch /tmp/home-mlops-canary)",
    "`touch /tmp/home-mlops-canary`",
    "a\nb",
    "a\rb",
    "a\tb",
    "../etc",
    "../../etc/passwd",
    "..",
    "x" * 5000,
    "1" * 5000,
    "ünïcödé",
    "日本語",
    "app😀",
    "a b",
    " ",
    "'quoted'",
    '"dq"',
    "a|b",
    "a&b",
    "a>b",
    "a<b",
    "a*",
    "a?",
    "a\\b",
    "${HOME}",
    "%2e%2e%2f",
    "a;b",
    "-rf",
    "--help",
    "a\x0bb",
    "\u200bzero-width",
    "ａｐｐ",  # fullwidth letters
]


def _refused(fn, value, what: str):
    with pytest.raises(HomeMlopsError) as info:
        fn(value)
    err = info.value
    assert err.code == ExitCode.BAD_INPUT
    text = str(err)
    assert what in text, text
    assert "expected:" in text, text
    # The value shown back never contains a raw newline (it is repr'd and cut).
    assert "\n" not in err.what
    assert len(err.what) < 300
    return err


# --------------------------------------------------------------------------- app


@pytest.mark.parametrize(
    "value",
    ["a", "1", "tabular-iris-multi-classifier", "a1-b2", "x" * 63, "0abc9", "tabular-iris-xgboost"],
)
def test_app_valid(value):
    assert validate_app(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "App", "my_app", "-app", "app-", "x" * 64, "a.b", "a/b", "APP", "tabular-Iris", *HOSTILE],
)
def test_app_invalid(value):
    _refused(validate_app, value, "APP_NAME")


# --------------------------------------------------------------------------- experiment id


@pytest.mark.parametrize("value", ["0", "1", "742983529384", "9" * 19])
def test_experiment_id_valid(value):
    assert validate_experiment_id(value) == value


@pytest.mark.parametrize(
    "value", ["", "1a", "abc", "-1", "1.0", "1e3", "9" * 20, " 1", "1 ", "０", "١", "+1", "0x10", *HOSTILE]
)
def test_experiment_id_invalid(value):
    err = _refused(validate_experiment_id, value, "EXPERIMENT_ID")
    assert "numeric id" in err.expected


# --------------------------------------------------------------------------- run id


@pytest.mark.parametrize("value", [RUN, "0" * 32, "abcdef0123456789abcdef0123456789"])
def test_run_id_valid(value):
    assert validate_run_id_ok(value)


def validate_run_id_ok(value):
    from home_mlops.params import validate_run_id

    return validate_run_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        RUN[:-1],  # 31
        RUN + "0",  # 33
        RUN.upper(),
        RUN[:31] + "G",
        RUN[:31] + "g",
        "-" + RUN[1:],
        RUN[:8] + "-" + RUN[9:],
        "3f2a9c0d-4b5e-6f70-8192-a3b4c5d6e7f8",
        *HOSTILE,
    ],
)
def test_run_id_invalid(value):
    from home_mlops.params import validate_run_id

    err = _refused(validate_run_id, value, "RUN_ID")
    assert "32 lowercase hexadecimal" in err.expected


# --------------------------------------------------------------------------- model name


@pytest.mark.parametrize("value", ["model", "Model_2", "a.b-c", "m" * 128])
def test_model_name_valid(value):
    assert validate_model_name(value) == value


@pytest.mark.parametrize("value", ["", "-m", "_m", "a/b", "m" * 129, *HOSTILE])
def test_model_name_invalid(value):
    _refused(validate_model_name, value, "model name")


# --------------------------------------------------------------------------- NAS


@pytest.mark.parametrize(
    "value, normalised",
    [
        ("", ""),
        ("/", "/"),
        ("/srv/mlruns", "/srv/mlruns"),
        ("/srv/mlruns/", "/srv/mlruns"),
        ("/mnt/nas/team@x/mlruns", "/mnt/nas/team@x/mlruns"),
        ("file:///srv/mlruns", "file:///srv/mlruns"),
        ("file:///srv/mlruns/", "file:///srv/mlruns"),
        ("gs://my-bucket", "gs://my-bucket"),
        ("gs://my-bucket/mlruns", "gs://my-bucket/mlruns"),
        ("gs://my.bucket_1/a/b/c/", "gs://my.bucket_1/a/b/c"),
        ("s3://bucket-x/prefix", "s3://bucket-x/prefix"),
    ],
)
def test_nas_valid(value, normalised):
    assert validate_nas(value) == normalised


@pytest.mark.parametrize(
    "value",
    [
        "relative/path",
        "./mlruns",
        "~/mlruns",
        "/srv/../etc",
        "/srv/./x",
        "file://relative",
        "file://host/srv",
        "http://example.com/mlruns",
        "https://bucket/mlruns",
        "ftp://x/y",
        "hdfs://x/y",
        "gs://",
        "gs://UPPER/mlruns",
        "gs://a/x",  # bucket too short
        "gs://-bucket/x",
        "gs://bucket/../x",
        "gs://bucket/a b",
        "s3://bucket/$(id)",
        "/srv/a b",
        "/srv/" + "x" * 1100,
        "/srv/;rm -rf /",
        "/srv/$(touch /tmp/canary)",
        "/srv/`id`",
        "/srv/a\nb",
        "/srv/日本",
        "C:\\mlruns",
        *[h for h in HOSTILE if h.strip() and h not in ("-rf", "--help")],
    ],
)
def test_nas_invalid(value):
    err = _refused(validate_nas, value, "NAS")
    assert "gs://bucket/prefix" in err.expected


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    "value",
    [
        DEFAULT_REGISTRY,
        "127.0.0.1:5000/home-mlops",
        "europe-west1-docker.pkg.dev/proj/repo",
        "europe-west1-docker.pkg.dev/my-project/models",
        "docker.io/team",
        "docker.io/myteam",
        "myteam",
        "localhost:5000/a/b/c",
        "registry.example.com/team/sub_dir",
        "ghcr.io/org/repo.name",
        "[::1]:5000/home-mlops",
    ],
)
def test_registry_valid(value):
    assert validate_registry(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "127.0.0.1:5000/home-mlops:latest",
        "docker.io/team:v1",
        "docker.io/team@sha256:" + "a" * 64,
        "docker.io/Team",
        "MyTeam",
        "docker.io/team/",
        "127.0.0.1:5000/home-mlops/",
        "/home-mlops",
        "http://127.0.0.1:5000/home-mlops",
        "127.0.0.1:5000/",
        "host:99999999/x",
        "team--",
        "a" * 256,
        *HOSTILE,
    ],
)
def test_registry_invalid(value):
    err = _refused(validate_registry, value, "AR_NAME")
    assert "no tag" in err.expected


# --------------------------------------------------------------------------- JobParams


def test_jobparams_parse_ok_and_defaults():
    p = JobParams.parse(experiment_id=" 12 ", run_id=RUN, app="tabular-iris-xgboost", nas="/srv/x/")
    assert (p.experiment_id, p.run_id, p.app, p.nas, p.registry) == ("12", RUN, "tabular-iris-xgboost", "/srv/x", DEFAULT_REGISTRY)


def test_jobparams_app_optional_for_resolve():
    p = JobParams.parse(experiment_id="1", run_id=RUN, need_app=False)
    assert p.app == "" and p.nas == ""


@pytest.mark.parametrize(
    "kwargs, what",
    [
        ({"experiment_id": "1", "run_id": RUN}, "APP_NAME"),  # need_app defaults to True
        ({"experiment_id": None, "run_id": RUN, "app": "a"}, "EXPERIMENT_ID"),
        ({"experiment_id": "1", "run_id": None, "app": "a"}, "RUN_ID"),
        ({"experiment_id": "1", "run_id": RUN, "app": "a", "nas": "rel"}, "NAS"),
        ({"experiment_id": "1", "run_id": RUN, "app": "a", "registry": "x/Y"}, "AR_NAME"),
        # A value stripped of blanks is fine, but inner tab/newline must still fail.
        ({"experiment_id": "1\n", "run_id": RUN, "app": "a"}, "EXPERIMENT_ID"),
        ({"experiment_id": "1", "run_id": RUN + "\n", "app": "a"}, "RUN_ID"),
        # A bad app is refused even when the command does not need one.
        ({"experiment_id": "1", "run_id": RUN, "app": "Bad_App", "need_app": False}, "APP_NAME"),
    ],
)
def test_jobparams_refuses(kwargs, what):
    with pytest.raises(HomeMlopsError) as info:
        JobParams.parse(**kwargs)
    assert info.value.code == ExitCode.BAD_INPUT
    assert what in str(info.value)
