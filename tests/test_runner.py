"""runner.py: the one way a tool is run (real subprocesses)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from home_mlops import runner

PRINT_ENV = "import os, sys; print(sorted(os.environ)); print('err line', file=sys.stderr)"


def test_secrets_and_jenkins_variables_stay_out(monkeypatch):
    for name, value in {"REGISTRY_PASSWORD": "pw-1234", "AWS_SECRET_ACCESS_KEY": "k", "JENKINS_URL": "http://j",
                        "BUILD_TAG": "x", "HTTPS_PROXY": "http://proxy:3128", "PIP_INDEX_URL": "http://idx"}.items():
        monkeypatch.setenv(name, value)
    proc = runner.run([sys.executable, "-c", PRINT_ENV], "python")
    assert proc.returncode == 0
    names = eval(proc.stdout.splitlines()[0])  # noqa: S307 - our own child's repr of a list of names
    assert "REGISTRY_PASSWORD" not in names and "AWS_SECRET_ACCESS_KEY" not in names
    assert "JENKINS_URL" not in names and "BUILD_TAG" not in names
    assert "HTTPS_PROXY" in names and "PIP_INDEX_URL" in names and "PATH" in names
    assert proc.stderr.strip() == "err line"


def test_no_stdin_and_argv_is_never_a_shell_string():
    # a child that reads stdin gets EOF at once instead of waiting on the caller's terminal
    proc = runner.run([sys.executable, "-c", "import sys; print(repr(sys.stdin.read())); print(sys.argv[1])",
                       "$(id); `id` | true"], "python")
    assert proc.stdout.splitlines() == ["''", "$(id); `id` | true"]


def test_output_is_printed_as_tool_lines(capsys, monkeypatch):
    from home_mlops import output

    monkeypatch.setattr(output, "_settings", output.OutputSettings(mode="plain"))
    monkeypatch.setenv("MY_TOOL_TOKEN", "tok-secret-1")  # not passed on, and scrubbed if a tool printed it
    runner.run([sys.executable, "-c", "print('hello from the tool tok-secret-1')"], "mytool")
    err = capsys.readouterr().err
    assert "mytool | hello from the tool ***" in err and "tok-secret-1" not in err


def test_quiet_only_returns():
    proc = runner.run([sys.executable, "-c", "print('value')"], "python", quiet=True)
    assert proc.stdout == "value\n"


def test_timeout_and_missing_program_raise_for_the_caller():
    with pytest.raises(subprocess.TimeoutExpired):
        runner.run([sys.executable, "-c", "import time; time.sleep(30)"], "python", timeout=0.5)
    with pytest.raises(OSError):
        runner.run(["/nonexistent/tool"], "tool")


def test_drop_removes_more_names():
    env = runner.clean_env({"PIP_NO_BINARY": ":all:", "PIP_INDEX_URL": "x", "PATH": "/bin"}, drop=("PIP_NO_BINARY",))
    assert env == {"PIP_INDEX_URL": "x", "PATH": "/bin"}


def test_stdin_reaches_a_quiet_tool_only():
    proc = runner.run([sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])"], "python",
                      quiet=True, stdin="pw-1234")
    assert proc.stdout == "4321-wp\n"
    with pytest.raises(ValueError):  # a printed run could echo it
        runner.run([sys.executable, "-c", "pass"], "python", stdin="pw-1234")


def test_a_daemon_starts_in_its_own_session_with_a_clean_environment(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("REGISTRY_PASSWORD", "pw-1234")
    log = tmp_path / "daemon.log"
    code = "import os, sys; print(os.getsid(0) == os.getpid(), 'REGISTRY_PASSWORD' in os.environ, sys.stdin.read() == '')"
    proc = runner.start([sys.executable, "-c", code], log)
    assert proc.wait(timeout=60) == 0 and proc.pid != os.getpid()
    assert log.read_text().split() == ["True", "False", "True"]
