"""What `home-mlops jenkins register|build|undeploy|status` do; cli/jenkins.py is their typer wiring.

The app jobs live in the `home-mlops` folder (jobs/): `home-mlops/<app>` builds and
deploys, `home-mlops/<app>-undeploy` removes. Jenkins' address and API token come from
the environment only (client.py); following a build and its exit code is follow.py.
python-jenkins and Jenkins Job Builder are imported only inside the functions that use them.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from home_mlops import env, runner
from home_mlops.errors import ExitCode, HomeMlopsError, BadInput, NotFound, Unavailable
from home_mlops.extras import require_installed
from home_mlops.jenkins.client import (FOLDER, UNDEPLOY_SUFFIX, VIEW, JenkinsConfig, build_job, server as make_server,
                                       translate, undeploy_job)
from home_mlops.jenkins.follow import description_lines, trigger_and_follow
from home_mlops.params import DEFAULT_REGISTRY, validate_app, validate_experiment_id, validate_nas, validate_registry, validate_run_id


def say(message: str) -> None:
    """A line of the command's progress or error on stderr, at once."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _console(text: str) -> None:
    """A chunk of a build's console, as it arrives (plain text, never markup)."""
    sys.stderr.write(text)
    sys.stderr.flush()


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


def register_items(name: str) -> list[str]:
    """What `register <app>` updates: the folder (JJB creates it before the jobs in it), its
    view (updating the folder resets its views), and the app's two jobs."""
    app = name[: -len(UNDEPLOY_SUFFIX)] if name.endswith(UNDEPLOY_SUFFIX) else name
    return [FOLDER, VIEW, build_job(app), undeploy_job(app)]


# --------------------------------------------------------------------- register
def jjb_argv(ini_path: Path, jobs_dir: Path, names: list[str]) -> list[str]:
    exe = Path(sys.executable).with_name("jenkins-jobs")
    if not exe.exists():
        require_installed("jenkins_jobs", "home-mlops jenkins register")  # jenkins-job-builder: the [jenkins] extra
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


def register_jobs(jobs: Path | None, names: list[str] | None) -> int:
    """`register`: Jenkins Job Builder `update` of the folder, its view and the apps' jobs (all without names)."""
    config = JenkinsConfig.from_env()
    jobs_dir = (jobs or repo_root() / "jobs").resolve()
    if not jobs_dir.is_dir():
        raise NotFound(f"JJB folder {jobs_dir} does not exist", "a folder with defaults/templates/projects YAML")
    for name in names or []:
        validate_app(name)
    with tempfile.TemporaryDirectory(prefix="home-mlops-jjb-") as tmp:
        ini = write_ini(Path(tmp), config)
        selected = list(dict.fromkeys(item for name in names or [] for item in register_items(name)))
        argv = jjb_argv(ini, jobs_dir, selected)
        say(f"> jenkins-jobs update {jobs_dir} -> {config.url}")
        try:  # the Jenkins user and token reach it in the ini file, not the environment
            ran = runner.run(argv, "jenkins-jobs", quiet=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HomeMlopsError(f"could not run jenkins-jobs: {exc}",
                                 hint="pip install 'jenkins-job-builder>=6,<7' 'setuptools<81'") from None
    said = ran.stdout + ran.stderr  # JJB logs to stderr, its results to stdout
    for line in said.splitlines():
        if "pkg_resources" in line or line.startswith("  import pkg_resources"):
            continue
        say("  " + line)
    if ran.returncode != 0:
        tail = said.strip().splitlines()[-1:] or ["(no output)"]
        if "401" in said or "403" in said:
            raise BadInput(f"Jenkins at {config.url} refused user {config.user!r}: {tail[0]}",
                           "a valid API token in " + env.JENKINS_TOKEN.name)
        if "Connection refused" in said or "Max retries" in said:
            raise Unavailable(f"Jenkins at {config.url} did not answer: {tail[0]}",
                              "a running Jenkins at " + env.JENKINS_URL.name, "start it with docker/jenkins/start.sh")
        raise HomeMlopsError(f"jenkins-jobs update failed (exit {ran.returncode}): {tail[0]}",
                             code=ExitCode.UNAVAILABLE)
    say(f"ok registered {', '.join(names) if names else 'all jobs of ' + str(jobs_dir)}")
    return 0


# ------------------------------------------------------------------------ build
def trigger_build(app: str, experiment_id: str, run_id: str, nas: str, registry: str,
                  timeout: float, poll: float) -> int:
    """`build`: the app's job with the five parameters, followed live; its home-mlops exit code."""
    parameters = {
        "APP_NAME": validate_app(app.strip()),
        "EXPERIMENT_ID": validate_experiment_id(experiment_id.strip()),
        "RUN_ID": validate_run_id(run_id.strip(), allow_models_uri=True),
        "NAS": validate_nas(nas.strip()),
        "AR_NAME": validate_registry(registry.strip() or DEFAULT_REGISTRY),
    }
    return trigger_and_follow(
        JenkinsConfig.from_env(), build_job(parameters["APP_NAME"]), parameters, timeout=timeout, interval=poll,
        missing_hint="run `home-mlops jenkins register` (and add the app to jobs/projects.yaml)",
        write=_console, say=say)


def trigger_undeploy(app: str, timeout: float, poll: float) -> int:
    """`undeploy`: the app's undeploy job (no parameters), followed live; its exit code."""
    name = validate_app(app.strip())
    return trigger_and_follow(
        JenkinsConfig.from_env(), undeploy_job(name), None, timeout=timeout, interval=poll,
        missing_hint=f"run `home-mlops jenkins register {name}` (the app must be in jobs/projects.yaml)",
        write=_console, say=say)


# ----------------------------------------------------------------------- status
def _plain(text: object) -> str:
    """A description on one line, control characters shown as '?' (it is text from Jenkins)."""
    return "; ".join(description_lines(text))


def last_builds(client, apps: list[str]) -> list[tuple[str, str, str, str]]:
    """(app, '#N' or '-', result, description) of each app's build job's last build."""
    rows = []
    for app in apps:
        job = build_job(app)
        if client.get_job_name(job) is None:
            rows.append((app, "-", "NOT REGISTERED", ""))
            continue
        last = client.get_job_info(job).get("lastBuild") or {}
        if not last.get("number"):
            rows.append((app, "-", "NEVER BUILT", ""))
            continue
        info = client.get_build_info(job, int(last["number"]))
        result = "RUNNING" if info.get("building") else str(info.get("result"))
        rows.append((app, f"#{last['number']}", result, _plain(info.get("description"))))
    return rows


def print_status(jobs: Path | None) -> int:
    """`status`: each app (from jobs/, else the folder in Jenkins) and its last build, as a table on stdout."""
    config = JenkinsConfig.from_env()
    try:
        apps = project_apps((jobs or repo_root() / "jobs").resolve())
    except HomeMlopsError:
        apps = []
    client = make_server(config)
    try:
        if not apps:  # no jobs/ here: the build jobs Jenkins has in the folder
            listed = (client.get_job_info(FOLDER) or {}).get("jobs") or []
            apps = [str(j["name"]) for j in listed if not str(j.get("name", "")).endswith(UNDEPLOY_SUFFIX)]
        rows = last_builds(client, apps)
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, config) from None
    width = max([len(r[0]) for r in rows] + [3])
    print(f"{'APP'.ljust(width)}  {'BUILD':<7} {'RESULT':<15} DESCRIPTION")
    for name, number, result, summary in rows:
        print(f"{name.ljust(width)}  {number:<7} {result:<15} {summary}")
    return 0
