"""`home-mlops jenkins register|build|undeploy|status`: the Jenkins side from the command line.

Configuration comes from the environment only (never options, so a token never
lands in shell history or a process list):
  HOME_MLOPS_JENKINS_URL    e.g. http://127.0.0.1:8080/
  HOME_MLOPS_JENKINS_USER   e.g. admin
  HOME_MLOPS_JENKINS_TOKEN  that user's API token
python-jenkins and Jenkins Job Builder are imported only inside the commands.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from home_mlops.errors import ExitCode, HomeMlopsError, BadInput, NotFound, Unavailable
from home_mlops.params import DEFAULT_REGISTRY, validate_app, validate_experiment_id, validate_nas, validate_registry, validate_run_id

jenkins_app = typer.Typer(
    name="jenkins",
    help="Register the app jobs in Jenkins (JJB), trigger a build and follow it, list their state.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

URL_ENV = "HOME_MLOPS_JENKINS_URL"
USER_ENV = "HOME_MLOPS_JENKINS_USER"
TOKEN_ENV = "HOME_MLOPS_JENKINS_TOKEN"
FINAL_RESULTS = ("SUCCESS", "UNSTABLE", "FAILURE", "NOT_BUILT", "ABORTED")


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class JenkinsConfig:
    url: str
    user: str
    token: str

    @classmethod
    def from_env(cls) -> "JenkinsConfig":
        values = {name: os.environ.get(name, "").strip() for name in (URL_ENV, USER_ENV, TOKEN_ENV)}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise BadInput(
                f"Jenkins is not configured: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set",
                f"{URL_ENV} (e.g. http://127.0.0.1:8080/), {USER_ENV} and {TOKEN_ENV} (that user's API token)",
                "export them (docker/jenkins/start.sh prints them for the dockerized Jenkins)",
            )
        url = values[URL_ENV]
        if not url.startswith(("http://", "https://")):
            raise BadInput(f"{URL_ENV} {url!r} is not an http(s) URL", "e.g. http://127.0.0.1:8080/")
        return cls(url=url.rstrip("/") + "/", user=values[USER_ENV], token=values[TOKEN_ENV])


def repo_root() -> Path:
    from home_mlops.settings import project_root

    root = project_root()
    if root is None or not (root / "jobs").is_dir():
        raise NotFound(
            "the jobs/ folder of home-mlops was not found",
            "a checkout of home-mlops (jobs/, Jenkinsfile) next to the installed package",
            "run from an editable install of the repository, or pass --jobs PATH",
        )
    return root


UNDEPLOY_SUFFIX = "-undeploy"


def project_apps(jobs_dir: Path) -> list[str]:
    """The apps listed in jobs/projects.yaml (the `app` axis of each project).

    An entry is a name or, in JJB's per-value form, `{name: {port: ..., ...}}`.
    """
    import yaml

    apps: list[str] = []
    for path in sorted(jobs_dir.glob("*.y*ml")):
        for entry in yaml.safe_load(path.read_text()) or []:
            project = entry.get("project") if isinstance(entry, dict) else None
            if isinstance(project, dict):
                value = project.get("app", [])
                for item in [value] if isinstance(value, (str, dict)) else list(value):
                    apps.extend(item.keys() if isinstance(item, dict) else [item])
    return [str(app) for app in apps]


def app_jobs(name: str) -> list[str]:
    """The Jenkins jobs of one app: its build job and its undeploy job (jobs/templates.yaml)."""
    return [name] if name.endswith(UNDEPLOY_SUFFIX) else [name, name + UNDEPLOY_SUFFIX]


def _server(config: JenkinsConfig, timeout: float = 30):
    import jenkins

    return jenkins.Jenkins(config.url, username=config.user, password=config.token, timeout=timeout)


def _translate(exc: Exception, config: JenkinsConfig) -> HomeMlopsError:
    """python-jenkins / requests errors as the CLI's errors (no traceback)."""
    import jenkins
    import requests

    text = str(exc)
    if isinstance(exc, HomeMlopsError):
        return exc
    if isinstance(exc, jenkins.NotFoundException):
        return NotFound(f"Jenkins at {config.url} answered 404: {text}")
    if "401" in text or "403" in text or isinstance(exc, jenkins.BadHTTPException) and "auth" in text.lower():
        return BadInput(
            f"Jenkins at {config.url} refused user {config.user!r}: {text}",
            "a valid API token for that user in " + TOKEN_ENV,
            "create one under <user> > Security > API Token (the dockerized Jenkins writes one at start)",
        )
    if isinstance(exc, (requests.exceptions.RequestException, jenkins.TimeoutException, OSError)):
        return Unavailable(f"Jenkins at {config.url} did not answer: {type(exc).__name__}: {text}",
                           "a running Jenkins at " + URL_ENV, "start it (docker/jenkins/start.sh) or fix the URL")
    if isinstance(exc, jenkins.JenkinsException):
        return Unavailable(f"Jenkins at {config.url} failed: {text}")
    return HomeMlopsError(f"unexpected error talking to Jenkins: {type(exc).__name__}: {text}")


def _run(body: Callable[[], int | None]) -> None:
    """Run a command body; a HomeMlopsError becomes its message on stderr and its exit code."""
    try:
        code = body() or 0
    except HomeMlopsError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(int(exc.code)) from None
    except KeyboardInterrupt:
        _err("interrupted")
        raise typer.Exit(130) from None
    if code:
        raise typer.Exit(code)


# --------------------------------------------------------------------- register
def jjb_argv(ini_path: Path, jobs_dir: Path, names: list[str]) -> list[str]:
    exe = Path(sys.executable).with_name("jenkins-jobs")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "jenkins_jobs"]
    return [*head, "--conf", str(ini_path), "update", str(jobs_dir), *names]


def write_ini(directory: Path, config: JenkinsConfig) -> Path:
    """A private JJB ini (0600, in a private temporary folder): the token never touches the repo."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser["job_builder"] = {"ignore_cache": "True", "keep_descriptions": "False", "recursive": "False",
                             "allow_duplicates": "False", "update": "all"}
    parser["jenkins"] = {"url": config.url, "user": config.user, "password": config.token,
                         "query_plugins_info": "False"}
    path = directory / "jenkins_jobs.ini"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    return path


@jenkins_app.command()
def register(
    jobs: Optional[Path] = typer.Option(None, "--jobs", help="JJB folder (default: jobs/ of this checkout)"),
    names: Optional[list[str]] = typer.Argument(None, help="Only these apps (default: all apps)"),
) -> None:
    """Create or update each app's jobs from jobs/: `<app>` and `<app>-undeploy` (Jenkins Job Builder `update`)."""

    def body() -> int:
        config = JenkinsConfig.from_env()
        jobs_dir = (jobs or repo_root() / "jobs").resolve()
        if not jobs_dir.is_dir():
            raise NotFound(f"JJB folder {jobs_dir} does not exist", "a folder with defaults/templates/projects YAML")
        for name in names or []:
            validate_app(name)
        with tempfile.TemporaryDirectory(prefix="home-mlops-jjb-") as tmp:
            ini = write_ini(Path(tmp), config)
            argv = jjb_argv(ini, jobs_dir, [job for name in names or [] for job in app_jobs(name)])
            _err(f"> jenkins-jobs update {jobs_dir} -> {config.url}")
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise HomeMlopsError(f"could not run jenkins-jobs: {exc}",
                                     hint="pip install 'jenkins-job-builder>=6,<7' 'setuptools<81'") from None
        for line in proc.stdout.splitlines():
            if "pkg_resources" in line or line.startswith("  import pkg_resources"):
                continue
            _err("  " + line)
        if proc.returncode != 0:
            tail = proc.stdout.strip().splitlines()[-1:] or ["(no output)"]
            if "401" in proc.stdout or "403" in proc.stdout:
                raise BadInput(f"Jenkins at {config.url} refused user {config.user!r}: {tail[0]}",
                               "a valid API token in " + TOKEN_ENV)
            if "Connection refused" in proc.stdout or "Max retries" in proc.stdout:
                raise Unavailable(f"Jenkins at {config.url} did not answer: {tail[0]}",
                                  "a running Jenkins at " + URL_ENV, "start it with docker/jenkins/start.sh")
            raise HomeMlopsError(f"jenkins-jobs update failed (exit {proc.returncode}): {tail[0]}",
                                 code=ExitCode.UNAVAILABLE)
        _err(f"ok registered {', '.join(names) if names else 'all jobs of ' + str(jobs_dir)}")
        return 0

    _run(body)


# ------------------------------------------------------------------------ build
def follow_console(server, job: str, number: int, *, poll: float, deadline: float,
                   write: Callable[[str], Any]) -> None:
    """Stream the build's console to `write` until Jenkins says there is no more."""
    import requests

    offset = 0
    url = f"{server.server}job/{_quote(job)}/{number}/logText/progressiveText"
    while True:
        response = server.jenkins_request(requests.Request("GET", url, params={"start": offset}))
        if response.text:
            write(response.text)
        offset = int(response.headers.get("X-Text-Size", offset + len(response.content)))
        if response.headers.get("X-More-Data", "").lower() != "true":
            return
        if time.monotonic() > deadline:
            raise Unavailable(f"build #{number} of {job} still running after the timeout",
                              hint="raise --timeout, or follow it in the Jenkins UI")
        time.sleep(poll)


def _quote(job: str) -> str:
    from urllib.parse import quote

    return quote(job, safe="")


def wait_for_start(server, job: str, queue_id: int, *, poll: float, deadline: float) -> int:
    while True:
        item = server.get_queue_item(queue_id)
        if item.get("cancelled"):
            raise HomeMlopsError(f"the queued build of {job} was cancelled", code=ExitCode.BUILD_FAILED)
        executable = item.get("executable") or {}
        if executable.get("number"):
            return int(executable["number"])
        if time.monotonic() > deadline:
            why = item.get("why") or "still queued"
            raise Unavailable(f"the build of {job} did not start in time: {why}",
                              hint="check that Jenkins has a free executor")
        time.sleep(poll)


def wait_for_result(server, job: str, number: int, *, poll: float, deadline: float) -> dict[str, Any]:
    while True:
        info = server.get_build_info(job, number)
        if not info.get("building") and info.get("result") in FINAL_RESULTS:
            return info
        if time.monotonic() > deadline:
            raise Unavailable(f"build #{number} of {job} has no result after the timeout")
        time.sleep(poll)


def trigger_and_follow(config: JenkinsConfig, job: str, parameters: dict[str, str] | None, *,
                       timeout: float, poll: float, missing_hint: str) -> int:
    """Trigger ``job`` (with ``parameters``, or none), stream its console to stderr, and
    return 0 only when it ends SUCCESS (its error otherwise)."""
    server = _server(config)
    deadline = time.monotonic() + timeout
    try:
        if server.get_job_name(job) is None:
            raise NotFound(f"Jenkins at {config.url} has no job {job!r}",
                           "the app's jobs, made from jobs/ by Jenkins Job Builder", missing_hint)
        queue_id = server.build_job(job, parameters=parameters)
        _err(f"> {job}: queued (queue item {queue_id})")
        number = wait_for_start(server, job, queue_id, poll=poll, deadline=deadline)
        _err(f"> {job} #{number}: {config.url}job/{_quote(job)}/{number}/console")
        follow_console(server, job, number, poll=poll, deadline=deadline, write=sys.stderr.write)
        info = wait_for_result(server, job, number, poll=poll, deadline=deadline)
    except HomeMlopsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every client error becomes one clear message
        raise _translate(exc, config) from None
    result = info.get("result")
    if result != "SUCCESS":
        description = (info.get("description") or "").strip()
        raise HomeMlopsError(
            f"{job} #{number} finished {result}" + (f" ({description.splitlines()[-1]})" if description else ""),
            hint=f"see {info.get('url') or config.url}console",
            code=ExitCode.BUILD_FAILED,
        )
    _err(f"ok {job} #{number} SUCCESS")
    if info.get("description"):
        _err(info["description"])
    return 0


@jenkins_app.command()
def build(
    app: str = typer.Option(..., "--app", help="The app; its job has the same name"),
    experiment_id: str = typer.Option(..., "--experiment-id", help="MLflow experiment id"),
    run_id: str = typer.Option(..., "--run-id", help="MLflow run id"),
    nas: str = typer.Option("", "--nas", help="Artifact root to read without the tracking server"),
    registry: str = typer.Option(DEFAULT_REGISTRY, "--registry", help="Image repository prefix (AR_NAME)"),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds to wait for the build"),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between polls", hidden=True),
) -> None:
    """Trigger the app's job with the five parameters, follow its console, exit 0 only on SUCCESS."""

    def body() -> int:
        parameters = {
            "APP_NAME": validate_app(app.strip()),
            "EXPERIMENT_ID": validate_experiment_id(experiment_id.strip()),
            "RUN_ID": validate_run_id(run_id.strip(), allow_models_uri=True),
            "NAS": validate_nas(nas.strip()),
            "AR_NAME": validate_registry(registry.strip() or DEFAULT_REGISTRY),
        }
        return trigger_and_follow(
            JenkinsConfig.from_env(), app, parameters, timeout=timeout, poll=poll,
            missing_hint="run `home-mlops jenkins register` (and add the app to jobs/projects.yaml)")

    _run(body)


@jenkins_app.command()
def undeploy(
    app: str = typer.Option(..., "--app", help="The app; its undeploy job is <app>-undeploy"),
    timeout: float = typer.Option(600, "--timeout", help="Seconds to wait for the build"),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between polls", hidden=True),
) -> None:
    """Run the app's `<app>-undeploy` job (no parameters), follow its console, exit 0 only on SUCCESS."""

    def body() -> int:
        name = validate_app(app.strip())
        return trigger_and_follow(
            JenkinsConfig.from_env(), name + UNDEPLOY_SUFFIX, None, timeout=timeout, poll=poll,
            missing_hint=f"run `home-mlops jenkins register {name}` (the app must be in jobs/projects.yaml)")

    _run(body)


# ----------------------------------------------------------------------- status
@jenkins_app.command()
def status(
    jobs: Optional[Path] = typer.Option(None, "--jobs", help="JJB folder whose apps to list (default: jobs/)"),
) -> None:
    """List the app jobs and the result of their last build."""

    def body() -> int:
        config = JenkinsConfig.from_env()
        try:
            apps = project_apps((jobs or repo_root() / "jobs").resolve())
        except HomeMlopsError:
            apps = []
        server = _server(config)
        rows: list[tuple[str, str, str, str]] = []
        try:
            names = apps or [job["name"] for job in server.get_jobs()]
            for name in names:
                if server.get_job_name(name) is None:
                    rows.append((name, "-", "NOT REGISTERED", ""))
                    continue
                job = server.get_job_info(name)
                last = job.get("lastBuild") or {}
                if not last.get("number"):
                    rows.append((name, "-", "NEVER BUILT", ""))
                    continue
                info = server.get_build_info(name, int(last["number"]))
                result = "RUNNING" if info.get("building") else str(info.get("result"))
                summary = (info.get("description") or "").strip().replace("\n", "; ")
                rows.append((name, f"#{last['number']}", result, summary))
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, config) from None
        width = max([len(r[0]) for r in rows] + [3])
        print(f"{'JOB'.ljust(width)}  {'BUILD':<7} {'RESULT':<15} DESCRIPTION")
        for name, number, result, summary in rows:
            print(f"{name.ljust(width)}  {number:<7} {result:<15} {summary}")
        return 0

    _run(body)
