"""Hostile job parameters through the real Jenkinsfile, the real library steps and the
real `home-mlops bento-build`, with `sh` running bash for real (harness real-shell mode).

Each hostile value goes into one of the five parameters (the others valid). The
pipeline must fail in its first stage because the CLI refused the value (exit 2,
with a JSON result naming the parameter), the value must reach the CLI verbatim
through the environment, and no injected command may run (canary files).
All runs share one JVM, a few at a time.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "groovy"))
import runner  # noqa: E402
from runner import PARAMS, VENV_BIN, calls, sh_scripts  # noqa: E402

from home_mlops.errors import HomeMlopsError  # noqa: E402
from home_mlops.params import (  # noqa: E402
    validate_app, validate_experiment_id, validate_nas, validate_registry, validate_run_id,
)

SCRIPT = 'rm -f -- "$HOME_MLOPS_JSON" && home-mlops bento-build --json "$HOME_MLOPS_JSON"'
VALIDATORS = {
    "APP_NAME": validate_app,
    "EXPERIMENT_ID": validate_experiment_id,
    "RUN_ID": validate_run_id,
    "NAS": validate_nas,
    "AR_NAME": validate_registry,
}


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
        "\x1b[31mred\x1b[0m",
        "a b",
        "#comment",
        "\\",
        "http://evil.example/x",
        "-1",
        "0123456789abcdef0123456789abcdeF",
    ]


def test_hostile_parameters_are_refused_by_the_cli_and_never_executed(tmp_path):
    canary = tmp_path / "canary" / "pwned"
    canary.parent.mkdir()
    values = hostile_values(canary)
    assert len(values) >= 30
    # the matrix itself must be hostile everywhere: each value is invalid for every parameter
    for name, validate in VALIDATORS.items():
        for value in values:
            with pytest.raises(HomeMlopsError):
                validate(value.strip(" "))

    if not (VENV_BIN / "home-mlops").exists():
        pytest.fail(f"{VENV_BIN / 'home-mlops'} missing: install the project into .venv (pip install -e .)")
    env = {
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME_MLOPS_HOME": str(tmp_path / "state"),
        # if a value ever got past validation, the CLI would fail here with 7, not 2
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9/",
        "HOME": str(tmp_path / "home"),
    }
    runs, expected = [], []
    for name in VALIDATORS:
        for i, value in enumerate(values):
            runs.append({"name": f"{name}-{i}", "mode": "real", "target": "jenkinsfile",
                         "params": dict(PARAMS, **{name: value}), "env": env,
                         "workspace": str(tmp_path / "ws" / f"{name}-{i}")})
            expected.append((name, value))
    records = runner.run_harness(tmp_path / "harness", runs, timeout=600, parallel=4)

    problems = []
    for (name, value), run, r in zip(expected, runs, records):
        workspace = run["workspace"]
        label = f"{name}={value[:40]!r}"
        shs = calls(r, "sh")
        if len(shs) != 1:
            problems.append(f"{label}: expected one sh call, got {len(shs)}: {sh_scripts(r)}")
            continue
        sh = shs[0]
        if sh["env"][name] != value:
            problems.append(f"{label}: the value did not reach the CLI verbatim")
        if sh["args"][0]["script"] != SCRIPT:
            problems.append(f"{label}: unexpected script {sh['args'][0]['script']!r}")
        if sh["status"] != 2:
            problems.append(f"{label}: CLI exit {sh['status']} (want 2); stderr: {sh.get('stderr', '')[-300:]}")
        result_file = Path(workspace) / "home-mlops-bento.json"
        if not result_file.exists():
            problems.append(f"{label}: no JSON result from the CLI (was the command run at all?)")
        else:
            data = json.loads(result_file.read_text())
            if data.get("ok") is not False or data.get("exit_code") != 2 or name not in data.get("error", ""):
                problems.append(f"{label}: unexpected result {data}")
        if r["result"] != "FAILURE" or r["failedStage"] != "Build bento":
            problems.append(f"{label}: pipeline {r['result']} in {r['failedStage']}")
        elif "exit code 2 (bad input" not in (r["failure"] or "") or name not in r["failure"]:
            problems.append(f"{label}: failure reason {r['failure']!r}")
        skipped = [c["args"][0] for c in calls(r, "stage") if c.get("skipped")]
        if skipped != ["Build gateway", "Deploy"]:
            problems.append(f"{label}: later stages not skipped: {skipped}")
    assert not canary.exists(), "an injected command ran"
    assert not list(canary.parent.iterdir())
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} problems)"
