"""The one way home-mlops runs pip: wheels only, and with no credentials in its environment.

pip runs packaging code we do not control (and, were an sdist ever built, a
model author's setup.py). It runs through the one runner (runner.py: no secrets,
no Jenkins variables, output streamed) with pip's own settings on top: wheels only,
and none of the settings that would let a value smuggle in an sdist.
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from home_mlops import runner

# pip's own settings that would let a value smuggle in an sdist or another index's code.
PIP_FORBIDDEN = ("PIP_NO_BINARY", "PIP_PREFER_BINARY", "PIP_EDITABLE", "PIP_SRC", "PIP_REQUIREMENT", "PIP_CONSTRAINT")


def clean_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a pip (or other packaging) subprocess may see."""
    env = runner.clean_env(environ, drop=PIP_FORBIDDEN)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_ONLY_BINARY"] = ":all:"
    return env


def run_pip(*args: str) -> subprocess.CompletedProcess:
    """`python -m pip <args>` with this venv's pip and a clean environment.

    Wheels only even if a caller forgets `--only-binary=:all:`: clean_env sets PIP_ONLY_BINARY.
    Its output is printed as it comes, prefixed by the stage (output.ToolPipe), and returned."""
    return runner.run([sys.executable, "-m", "pip", *args], "pip", env=clean_env())
