"""The one way home-mlops runs another program: a clean environment, no stdin, output streamed.

Every tool we start (pip, git, dockerd, the registry, htpasswd, debootstrap) runs code we do
not control, so it gets the environment it needs to do its job (PATH, HOME, proxies, CA
bundles, its own settings) and nothing that lets it push images, read buckets or act on
Jenkins: registry passwords, cloud keys, tokens and Jenkins' own variables are removed.
Its output is printed as it comes, one stamped and scrubbed line each, prefixed by the tool
(output.ToolPipe), and returned, so a failure can quote its tail.
"""
from __future__ import annotations

import fnmatch
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

# Names (shell patterns, matched case-insensitively) never passed to a subprocess.
SECRET_PATTERNS = (
    "REGISTRY_*", "*_PASSWORD", "*PASSWD*", "*_TOKEN", "*_TOKEN_*", "*_SECRET*", "*SECRET_KEY*", "*_API_KEY",
    "*_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_*", "AWS_*", "AZURE_*",
    "DOCKER_AUTH_CONFIG", "HOME_MLOPS_REGISTRY_*",
    # Jenkins' own variables: build identity and URLs, not needed by a tool.
    "JENKINS_*", "BUILD_*", "JOB_*", "HUDSON_*", "WORKSPACE", "WORKSPACE_*", "NODE_*", "EXECUTOR_NUMBER",
    "GIT_*", "RUN_DISPLAY_URL", "RUN_ARTIFACTS_DISPLAY_URL", "RUN_CHANGES_DISPLAY_URL", "RUN_TESTS_DISPLAY_URL",
    "STAGE_NAME", "CHANGE_*",
)
# Kept even when a pattern above matches: what a tool needs to reach the network.
KEEP = ("PIP_*", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def matches(name: str, patterns: Sequence[str]) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, p.upper()) for p in patterns)


def clean_env(environ: Mapping[str, str] | None = None, *, drop: Sequence[str] = ()) -> dict[str, str]:
    """The environment a subprocess may see: ``environ`` (default: ours) without secrets,
    Jenkins' variables and the names in ``drop`` (shell patterns)."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items()
            if not matches(name, drop) and (matches(name, KEEP) or not matches(name, SECRET_PATTERNS))}


def run(argv: Sequence[str], source: str, *, env: Mapping[str, str] | None = None,
        timeout: float | None = None, quiet: bool = False, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` (a list: never a shell string) and wait; its output as text in the result.

    ``env`` defaults to clean_env(). ``quiet``: the output is only returned, not printed (a
    tool asked for a value, like ``git rev-parse``). ``stdin``: text the tool reads (a password
    goes there, never into argv, where ps shows it); quiet only, so nothing echoes it. A
    missing program raises OSError and a timeout subprocess.TimeoutExpired (the process is
    killed), for the caller to explain."""
    from home_mlops.output import ToolPipe

    argv = [str(a) for a in argv]
    env = dict(clean_env() if env is None else env)
    if quiet:
        given = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, **given)
    if stdin is not None:
        raise ValueError("stdin is for quiet runs only: a tool's echo of it would be printed")
    with ToolPipe(source) as out, ToolPipe(source) as err:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out.fd, stderr=err.fd, env=env, timeout=timeout)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout=out.text, stderr=err.text)


def start(argv: Sequence[str], log: Path) -> subprocess.Popen:
    """Start a daemon that outlives the command (dockerd, the registry): its own session, no
    stdin, clean_env(), its output appended to ``log``."""
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, env=clean_env())
