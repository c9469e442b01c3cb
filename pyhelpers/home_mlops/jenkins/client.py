"""Talking to Jenkins: its address and API token, the app jobs' paths, errors as the CLI's.

Configuration comes from the environment only (never options, so a token never lands in
shell history or a process list): HOME_MLOPS_JENKINS_URL, HOME_MLOPS_JENKINS_USER and
HOME_MLOPS_JENKINS_TOKEN (home_mlops/env.py). python-jenkins and requests are imported
inside the functions: `home-mlops --help` does not pay for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from home_mlops import env
from home_mlops.error_kinds import Kind, classify
from home_mlops.errors import BadInput, HomeMlopsError, NotFound, Unavailable
from home_mlops.extras import require

# Every app job lives in this folder (jobs/folder.yaml, jobs/templates.yaml `folder:`).
FOLDER = "home-mlops"
VIEW = f"{FOLDER}/apps"  # the folder's list view (jobs/folder.yaml)
UNDEPLOY_SUFFIX = "-undeploy"
_SETTINGS = (env.JENKINS_URL, env.JENKINS_USER, env.JENKINS_TOKEN)


@dataclass(frozen=True)
class JenkinsConfig:
    url: str
    user: str
    token: str

    @classmethod
    def from_env(cls) -> "JenkinsConfig":
        values = {var.name: (var.get() or "").strip() for var in _SETTINGS}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise BadInput(
                f"Jenkins is not configured: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set",
                f"{env.JENKINS_URL.name} (e.g. http://127.0.0.1:8080/), {env.JENKINS_USER.name} and "
                f"{env.JENKINS_TOKEN.name} (that user's API token)",
                "export them (docker/jenkins/start.sh writes them to $HOME_MLOPS_HOME/jenkins/jenkins.env)",
            )
        url = values[env.JENKINS_URL.name]
        if not url.startswith(("http://", "https://")):
            raise BadInput(f"{env.JENKINS_URL.name} {url!r} is not an http(s) URL", "e.g. http://127.0.0.1:8080/")
        return cls(url=url.rstrip("/") + "/", user=values[env.JENKINS_USER.name],
                   token=values[env.JENKINS_TOKEN.name])


def build_job(app: str) -> str:
    """The full name of the app's build job."""
    return f"{FOLDER}/{app}"


def undeploy_job(app: str) -> str:
    return f"{FOLDER}/{app}{UNDEPLOY_SUFFIX}"


def job_url(base: str, job: str) -> str:
    """`<base>job/<folder>/job/<name>/`: each path part quoted on its own."""
    return base + "".join(f"job/{quote(part, safe='')}/" for part in job.split("/"))


def server(config: JenkinsConfig, timeout: float = 30):
    jenkins = require("jenkins", "home-mlops jenkins")  # python-jenkins: the [jenkins] extra

    return jenkins.Jenkins(config.url, username=config.user, password=config.token, timeout=timeout)


def translate(exc: Exception, config: JenkinsConfig) -> HomeMlopsError:
    """python-jenkins / requests errors as the CLI's errors (no traceback), by type."""
    import jenkins
    import requests

    if isinstance(exc, HomeMlopsError):
        return exc
    text = str(exc)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    kind = classify(exc)
    if isinstance(exc, jenkins.NotFoundException) or status == 404 or kind is Kind.NOT_FOUND:
        return NotFound(f"Jenkins at {config.url} answered 404: {text}")
    if status in (401, 403) or kind is Kind.DENIED:
        # python-jenkins raises JenkinsException while handling requests' HTTPError: the status is
        # in the chain (never read from the text: a job named app-401 is not a refusal)
        return BadInput(
            f"Jenkins at {config.url} refused user {config.user!r}: {text}",
            f"a valid API token for that user in {env.JENKINS_TOKEN.name}",
            "create one under <user> > Security > API Token (the dockerized Jenkins writes one at start)",
        )
    if isinstance(exc, (requests.exceptions.RequestException, jenkins.TimeoutException, OSError)):
        return Unavailable(f"Jenkins at {config.url} did not answer: {type(exc).__name__}: {text}",
                           f"a running Jenkins at {env.JENKINS_URL.name}",
                           "start it (docker/jenkins/start.sh) or fix the URL")
    if isinstance(exc, jenkins.JenkinsException):
        return Unavailable(f"Jenkins at {config.url} failed: {text}")
    return HomeMlopsError(f"unexpected error talking to Jenkins: {type(exc).__name__}: {text}")
