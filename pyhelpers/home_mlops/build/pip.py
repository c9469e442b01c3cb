"""The one way home-mlops runs pip: wheels only, and with no credentials in its environment.

pip runs packaging code we do not control (and, were an sdist ever built, a
model author's setup.py). It gets the environment it needs to reach the
package index (PATH, HOME, PIP_* settings, CA bundles, proxies) and nothing
that lets it push images or read buckets: registry passwords, cloud keys,
tokens and Jenkins' own variables are removed.
"""
from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from collections.abc import Mapping

# Names (shell patterns, matched case-insensitively) never passed to a subprocess.
SECRET_PATTERNS = (
    "REGISTRY_*", "*_PASSWORD", "*PASSWD*", "*_TOKEN", "*_TOKEN_*", "*_SECRET*", "*SECRET_KEY*", "*_API_KEY",
    "*_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_*", "AWS_*", "AZURE_*",
    "DOCKER_AUTH_CONFIG", "HOME_MLOPS_REGISTRY_*",
    # Jenkins' own variables: build identity and URLs, not needed by pip.
    "JENKINS_*", "BUILD_*", "JOB_*", "HUDSON_*", "WORKSPACE", "WORKSPACE_*", "NODE_*", "EXECUTOR_NUMBER",
    "GIT_*", "RUN_DISPLAY_URL", "RUN_ARTIFACTS_DISPLAY_URL", "RUN_CHANGES_DISPLAY_URL", "RUN_TESTS_DISPLAY_URL",
    "STAGE_NAME", "CHANGE_*",
)
# Kept even when a pattern above matches: what pip needs to reach the index.
KEEP = ("PIP_*", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
# pip's own settings that would let a value smuggle in an sdist or another index's code.
PIP_FORBIDDEN = ("PIP_NO_BINARY", "PIP_PREFER_BINARY", "PIP_EDITABLE", "PIP_SRC", "PIP_REQUIREMENT", "PIP_CONSTRAINT")


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, p.upper()) for p in patterns)


def clean_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a pip (or other packaging) subprocess may see."""
    source = os.environ if environ is None else environ
    env = {}
    for name, value in source.items():
        if _matches(name, PIP_FORBIDDEN):
            continue
        if _matches(name, KEEP) or not _matches(name, SECRET_PATTERNS):
            env[name] = value
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_ONLY_BINARY"] = ":all:"
    return env


def run_pip(*args: str) -> subprocess.CompletedProcess:
    """`python -m pip <args>` with this venv's pip and a clean environment.

    Wheels only even if a caller forgets `--only-binary=:all:`: clean_env sets PIP_ONLY_BINARY.
    Its output is printed as it comes, prefixed by the stage (output.ToolPipe), and returned."""
    from home_mlops.output import ToolPipe

    argv = [sys.executable, "-m", "pip", *args]
    with ToolPipe("pip") as out, ToolPipe("pip") as err:
        proc = subprocess.run(argv, stdout=out.fd, stderr=err.fd, env=clean_env(), stdin=subprocess.DEVNULL)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout=out.text, stderr=err.text)
