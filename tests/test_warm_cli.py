"""The tests' warm CLI (tests/warm_cli.py) gives what a real exec of the console script gives.

Most CLI runs in this suite go through it, so a difference here would make every CLI test test
something other than what users run.
"""
from __future__ import annotations

import re
import subprocess

import pytest

from conftest import CLI, WARM_CLI, cli_env, run_cli

RUN = "0123456789abcdef0123456789abcdef"
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z|\(\d+\.\d s\)|\"seconds\": [\d.]+")


def both(args: list[str], env: dict, cwd) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    warm = WARM_CLI.run(args, env, timeout=120, cwd=cwd)
    real = subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    return warm, real


def same(a: str, b: str) -> bool:
    return STAMP.sub("<t>", a) == STAMP.sub("<t>", b)


def test_warm_runs_print_and_exit_as_real_ones(tmp_path):
    env = cli_env(tmp_path / "state")
    for args in (["--version"],
                 ["resolve", "--experiment-id", "1", "--run-id", "../etc", "--json", "-"],
                 ["resolve", "--experiment-id", "1", "--run-id", RUN, "--nas", str(tmp_path / "none"), "--json", "-"]):
        warm, real = both(args, env, tmp_path)
        assert (warm.returncode, warm.args) == (real.returncode, real.args), args
        assert same(warm.stdout, real.stdout), (args, warm.stdout, real.stdout)
        assert same(warm.stderr, real.stderr), (args, warm.stderr, real.stderr)
    assert real.returncode == 3 and "does not exist" in real.stderr and "Traceback" not in real.stderr


def test_the_run_gets_the_callers_environment_and_folder(tmp_path):
    """The tracking URI comes from the run's env (not the server's), the relative --json lands in cwd."""
    env = cli_env(tmp_path / "state", MLFLOW_TRACKING_URI="http://127.0.0.1:9", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    proc = run_cli(["resolve", "--experiment-id", "1", "--run-id", RUN, "--json", "out.json"], env, timeout=120,
                   cwd=tmp_path)
    assert proc.returncode == 7, proc.stderr
    assert "tracking server http://127.0.0.1:9 did not answer" in proc.stderr
    assert '"exit_code": 7' in (tmp_path / "out.json").read_text()


def test_other_startup_settings_get_a_real_exec(tmp_path):
    env = cli_env(tmp_path)
    assert not WARM_CLI.usable_for({**env, "PYTHONWARNINGS": "error"})
    assert not WARM_CLI.usable_for({**env, "LC_ALL": "C"})
    assert WARM_CLI.usable_for({**env, "HOME_MLOPS_PORT": "19999"})


def test_a_run_past_its_timeout_is_killed_as_subprocess_would(tmp_path):
    """TimeoutExpired, and the process is gone when it is raised: it never got to write its result."""
    env = cli_env(tmp_path / "state", MLFLOW_TRACKING_URI="http://127.0.0.1:9", MLFLOW_HTTP_REQUEST_MAX_RETRIES="6",
                  MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="2")  # a minute of retries against a closed port
    with pytest.raises(subprocess.TimeoutExpired):
        WARM_CLI.run(["resolve", "--experiment-id", "1", "--run-id", RUN, "--json", "out.json"], env, timeout=3,
                     cwd=tmp_path)
    assert not (tmp_path / "out.json").exists()
