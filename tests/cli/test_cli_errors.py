"""Bad and hostile parameters through the real `home-mlops` CLI: exit 2, a clear message, nothing run.

The full list of values is checked against the validators in test_params.py; here a
representative sample goes through a real subprocess (each costs seconds), as options,
as `--opt=value` (so values starting with '-' stay values) and as Jenkins-style
environment variables.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli_env, run_cli

RUN = "3f2a9c0d4b5e6f708192a3b4c5d6e7f8"
CANARY = "canary-file"

# (parameter, value template, what the message must name, a word of the expected form)
# {canary} is replaced by an absolute path that must never be created.
CASES = [
    ("experiment-id", "12a", "EXPERIMENT_ID", "numeric id"),
    ("experiment-id", "$(touch {canary})", "EXPERIMENT_ID", "numeric id"),
    ("run-id", RUN[:-2], "RUN_ID", "32 lowercase hexadecimal"),
    ("run-id", RUN.upper(), "RUN_ID", "32 lowercase hexadecimal"),
    ("run-id", "`touch {canary}`", "RUN_ID", "32 lowercase hexadecimal"),
    ("run-id", RUN + "\ntouch {canary}", "RUN_ID", "32 lowercase hexadecimal"),
    ("nas", "; touch {canary}", "NAS", "gs://bucket/prefix"),
    ("nas", "/srv/../../etc", "NAS", "gs://bucket/prefix"),
    ("nas", "/srv/" + "x" * 4000, "NAS", "gs://bucket/prefix"),
    ("nas", "/srv/ünïcödé-日本", "NAS", "gs://bucket/prefix"),
    ("model-name", "../{canary}", "model name", "letters, digits"),
    ("experiment-id", "-1; rm -rf /", "EXPERIMENT_ID", "numeric id"),
]

# Parameters only the build/deploy commands take: checked through bento-build (validation first).
BUILD_CASES = [
    ("app", "My_App", "APP_NAME", "DNS label"),
    ("app", "tabular-Iris", "APP_NAME", "DNS label"),
    ("app", "$(touch {canary})", "APP_NAME", "DNS label"),
    ("app", "a" * 300, "APP_NAME", "DNS label"),
    ("registry", "127.0.0.1:5000/home-mlops:latest", "AR_NAME", "no tag"),
    ("registry", "127.0.0.1:5000/Home-MLOps", "AR_NAME", "no tag"),
    ("registry", "127.0.0.1:5000/home-mlops/", "AR_NAME", "no tag"),
    ("registry", "x;touch {canary}", "AR_NAME", "no tag"),
    ("app", "[/x]", "APP_NAME '[/x]'", "DNS label"),  # rich markup: printed literally, never parsed
    ("app", "[link=https://evil.invalid]x[/link]", "APP_NAME '[link=https://evil.invalid]x[/link]'", "DNS label"),
    ("app", "[bold]x[/bold]", "APP_NAME '[bold]x[/bold]'", "DNS label"),
]

GOOD = {"app": "tabular-iris-multi-classifier", "experiment-id": "1", "run-id": RUN, "nas": "", "registry": ""}
ENV_NAMES = {"app": "APP_NAME", "experiment-id": "EXPERIMENT_ID", "run-id": "RUN_ID", "nas": "NAS", "registry": "AR_NAME"}


def _check(proc, out: Path, canary: Path, what: str, expected: str):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    err = " ".join(proc.stderr.split())  # rich may wrap long lines
    assert what in err, proc.stderr
    assert "expected:" in err and expected in err, proc.stderr
    assert not canary.exists()
    data = json.loads(out.read_text())
    assert data["ok"] is False and data["exit_code"] == 2 and what in data["error"]


def _env(state: Path) -> dict:
    # An unreachable tracking server: a validation error must come before any contact.
    return cli_env(state, MLFLOW_TRACKING_URI="http://127.0.0.1:9")


def _args(command: str, bad: str, value: str) -> list[str]:
    params = ["experiment-id", "run-id"] if command == "resolve" else ["app", "experiment-id", "run-id"]
    args = [command]
    for name in params:
        if name != bad:
            args.append(f"--{name}={GOOD[name]}")
    args.append(f"--{bad}={value}")
    if command == "bento-build":
        args.append("--no-push")
    return args


@pytest.mark.timeout(300)
@pytest.mark.parametrize("param, template, what, expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_resolve_refuses(param, template, what, expected, state, tmp_path):
    canary = tmp_path / CANARY
    value = template.format(canary=canary)
    out = tmp_path / "r.json"
    proc = run_cli([*_args("resolve", param, value), "--json", str(out)], env=_env(state), timeout=240, cwd=tmp_path)
    _check(proc, out, canary, what, expected)
    assert not (state / "cache" / "models").exists() or not any((state / "cache" / "models").iterdir())


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "param, template, what, expected", BUILD_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(BUILD_CASES)]
)
def test_build_refuses(param, template, what, expected, state, tmp_path):
    canary = tmp_path / CANARY
    value = template.format(canary=canary)
    out = tmp_path / "r.json"
    proc = run_cli([*_args("bento-build", param, value), "--json", str(out)], env=_env(state), timeout=240, cwd=tmp_path)
    _check(proc, out, canary, what, expected)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "param, value, what",
    [
        ("experiment-id", "`touch {canary}`", "EXPERIMENT_ID"),
        ("run-id", "$(touch {canary})", "RUN_ID"),
        ("nas", "gs://bucket/$(touch {canary})", "NAS"),
    ],
)
def test_environment_variables_refused(param, value, what, state, tmp_path):
    """Jenkins passes the parameters as environment variables: same rules."""
    canary = tmp_path / CANARY
    env = _env(state)
    for name, good in GOOD.items():
        if good and name in ("experiment-id", "run-id"):
            env[ENV_NAMES[name]] = good
    env[ENV_NAMES[param]] = value.format(canary=canary)
    out = tmp_path / "r.json"
    proc = run_cli(["resolve", "--json", str(out)], env=env, timeout=240, cwd=tmp_path)
    _check(proc, out, canary, what, "expected")


@pytest.mark.timeout(300)
def test_missing_parameters(state, tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli(["resolve", "--run-id", RUN, "--json", str(out)], env=_env(state), timeout=240, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "EXPERIMENT_ID" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("value", ["[/x]", "[link=https://evil.invalid]x[/link]", "[bold red]x"])
def test_markup_in_app_name_env_prints_literally(value, state, tmp_path):
    """APP_NAME from Jenkins, as in issue 9: exit 2 with the JSON result, the value shown as passed."""
    env = {**_env(state), "APP_NAME": value}
    out = tmp_path / "r.json"
    proc = run_cli(["bento-build", "--experiment-id=1", f"--run-id={RUN}", "--no-push", "--json", str(out)],
                   env=env, timeout=240, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "MarkupError" not in proc.stderr and "Traceback" not in proc.stderr
    assert f"APP_NAME {value!r}" in proc.stderr
    data = json.loads(out.read_text())
    assert data["exit_code"] == 2 and f"APP_NAME {value!r}" in data["error"]


def test_console_prints_values_literally(capsys):
    from home_mlops import console

    value = "[/x] [link=https://evil.invalid]click[/link] [bold]b[/bold] :smile:"
    for emit in (console.step, console.ok, console.warn, console.info, console.error):
        emit(value)
    err = capsys.readouterr().err
    assert err.count(value) == 5, err
    assert "> " + value in err and "ok " + value in err and "warning: " + value in err and "error: " + value in err


def test_json_to_a_pipe_is_written_in_place_and_to_a_folder_is_refused_first(state, tmp_path):
    """--json /dev/null (or a named pipe) is written into, never renamed over: the rename that keeps
    a result file whole would put a regular file in place of the device, for every later program.
    A folder is refused with exit 2 before the command does anything."""
    import os
    import stat
    import threading

    pipe = tmp_path / "result.pipe"
    os.mkfifo(pipe)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()), daemon=True)
    reader.start()
    proc = run_cli(["status", "--app", "hmt-json-pipe", "--json", str(pipe)], cli_env(state), timeout=120)
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert stat.S_ISFIFO(pipe.stat().st_mode), "the pipe was replaced by a regular file"
    assert json.loads(received[0])["command"] == "status"

    proc = run_cli(["undeploy", "--app", "hmt-json-folder", "--json", str(tmp_path)], cli_env(state), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and f"--json {tmp_path} is a folder" in proc.stderr
    assert "undeploy: " not in proc.stderr  # stopped before the command ran: no summary of one
