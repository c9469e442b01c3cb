"""Any command: a module an extra brings, missing, is exit 2 naming the extra (the CLI's safety net
behind the per-library translations); a missing home_mlops module is still a bug (exit 1)."""
from __future__ import annotations

import json

import pytest
import typer

from home_mlops.cli.app import run_command


def run(tmp_path, missing: str) -> tuple[int, dict]:
    out = tmp_path / "r.json"

    def body():
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    with pytest.raises(typer.Exit) as info:
        run_command("resolve", str(out), body)
    return info.value.exit_code, json.loads(out.read_text())


def test_missing_extra_module_is_exit_2_naming_it(tmp_path, capsys):
    code, result = run(tmp_path, "botocore.session")
    assert code == 2 and result["exit_code"] == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "[s3]" in err and "botocore.session" in err and "bug" not in err


def test_missing_home_mlops_module_is_a_bug(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HOME_MLOPS_DEBUG", raising=False)
    code, result = run(tmp_path, "home_mlops.no_such_module")
    assert code == 1 and result["exit_code"] == 1
    assert "bug in home-mlops" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["build", "deploy", "pipeline", "run_options", "jenkins", "k8s", "platform",
                                    "schema", "common"])
def test_every_command_module_imports_on_its_own(module):
    """A command module imported first (a test, a bench, a plugin) must not hit an import
    cycle with cli/app.py, which mounts the command modules when it is imported."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", f"import home_mlops.cli.{module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
