"""Output a Jenkins user can follow (issue 11): the real CLI with no terminal (pipes, as under Jenkins),
real Docker builds on the local engine, and the summary line the Jenkins build description uses.

The builds use their own base images (a labelled copy of the platform's base image, so the
gateway build really runs its Docker steps instead of reusing an image; and a copy whose
python3 fails, so a Docker step fails with output of its own). Everything they create is
removed at the end: images by id, their intermediate layers with them.
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import uuid

import pytest

from conftest import CLI, cli_env, private_platform, run_cli
from home_mlops import output
from home_mlops.results import failure_text, summary_text

CANARY = "hmt-f-canary-Pa55w0rd-9d1e"  # the registry password: never printed or written, in any mode
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# --------------------------------------------------------------------------- no Docker needed

def test_mode_is_rich_on_a_terminal_and_plain_without_one():
    assert output.choose_mode(None, is_terminal=True) == "rich"
    assert output.choose_mode(None, is_terminal=False) == "plain"
    assert output.choose_mode("json", is_terminal=True) == "json"


def test_a_logged_line_has_no_secret_and_no_control_character(monkeypatch):
    monkeypatch.setenv("REGISTRY_PASSWORD", CANARY)
    line = output.clean(f"\x1b[31mlogin\x1b[0m with {CANARY}\r\x07 token=abc123 done")
    assert CANARY not in line and "abc123" not in line
    assert not CONTROL.search(line) and "\x1b" not in line
    assert line.startswith("login with ***") and line.endswith("token=*** done")


def test_plain_and_json_lines(monkeypatch, capsys):
    monkeypatch.setenv("REGISTRY_PASSWORD", CANARY)
    monkeypatch.setattr(output, "_settings", output.OutputSettings(mode="plain"))
    with output.stage("bento-build"):
        output.tool_line("docker", f"Step 4/12 : RUN echo {CANARY}")
    monkeypatch.setattr(output, "_settings", output.OutputSettings(mode="json"))
    with output.stage("deploy"):
        output.write_plain("warning", "warning:", "two\nlines", {"port": 18600})
    plain, *records = capsys.readouterr().err.splitlines()
    assert re.fullmatch(STAMP + r" \[bento-build\] docker \| Step 4/12 : RUN echo \*\*\*", plain)
    parsed = [json.loads(r) for r in records]
    assert [p["message"] for p in parsed] == ["two", "lines"]
    assert {(p["level"], p["stage"]) for p in parsed} == {("warning", "deploy")}
    assert parsed[0]["fields"] == {"port": "18600"} and re.fullmatch(STAMP, parsed[0]["time"])


def test_quiet_keeps_warnings_errors_and_the_summary(monkeypatch):
    monkeypatch.setattr(output, "_settings", output.OutputSettings(mode="plain", level="quiet"))
    assert [lvl for lvl in ("info", "output", "warning", "error", "summary") if output.shown(lvl)] == \
        ["warning", "error", "summary"]
    monkeypatch.setattr(output, "_settings", output.OutputSettings(mode="rich", level="normal"))
    assert not output.shown("output")  # a terminal has the progress bar; --verbose adds the tools' lines
    monkeypatch.setattr(output, "_settings", output.OutputSettings(mode="rich", level="verbose"))
    assert output.shown("output")


def test_summary_is_the_jenkins_description_text():
    """Same text as src/io/homemlops/Summary.groovy (line / success / failure)."""
    assert summary_text("bento-build", {"image": "r/a-bento:t", "digest": "sha256:ab"}) == "bento: r/a-bento:t (sha256:ab)"
    assert summary_text("fastapi-build", {"image": "r/a-gateway:t", "digest": None}) == "gateway: r/a-gateway:t"
    assert summary_text("deploy", {"url": "http://host:8000", "run_id": "abc"}) == "deploy: http://host:8000 (run abc)"
    assert summary_text("undeploy", {"app": "a", "removed": []}) == "undeploy: nothing was deployed for a"
    assert summary_text("undeploy", {"app": "a", "removed": ["x", "y"]}) == "undeploy: removed x, y"
    pipeline = summary_text("pipeline", {
        "bento": {"app": "a", "image": "r/a-bento:t", "digest": "sha256:b"}, "gateway": {"image": "r/a-gateway:t"},
        "deploy": {"app": "a", "url": "http://host:8000", "local_url": "http://127.0.0.1:8000", "previous_run_id": None}})
    assert pipeline.splitlines() == [
        "home-mlops: deployed a", "  bento image:   r/a-bento:t @ sha256:b", "  gateway image: r/a-gateway:t",
        "  url:           http://host:8000/predict", "  on this host:  http://127.0.0.1:8000/predict"]
    assert failure_text("deploy", "port 8000 is taken\n  expected: x") == \
        "home-mlops: FAILED in stage 'deploy': port 8000 is taken"


def test_version_and_a_result_on_stdout(tmp_path):
    from importlib.metadata import version

    proc = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"home-mlops {version('home-mlops')}"
    proc = subprocess.run([CLI, "resolve", "--experiment-id", "1", "--run-id", "../etc", "--json", "-"],
                          capture_output=True, text=True, timeout=60, env=cli_env(tmp_path))
    result = json.loads(proc.stdout)  # stdout holds the result and nothing else
    assert proc.returncode == 2 and result["exit_code"] == 2 and not result["ok"]
    assert result["summary"].startswith("home-mlops: FAILED in stage 'resolve': RUN_ID")
    last = proc.stderr.splitlines()[-1]
    assert re.match(STAMP + r" \[resolve\] summary: home-mlops: FAILED in stage 'resolve'", last)


def test_bad_log_format_is_exit_2():
    proc = subprocess.run([CLI, "--log-format", "xml", "status"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "plain, json or rich" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- real Docker builds

def _make_base(client, tag: str, dockerfile: str) -> str:
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True)
    return image.id


def _remove_tree(client, image_id: str) -> None:
    """The image and every image built on it (the classic builder's intermediate layers), children first."""
    import docker.errors

    # docker's own list (dicts), read once: images.list() inspects each image it lists, and an
    # image that a test on the other xdist worker removes in between would raise ImageNotFound
    children: dict[str, list[str]] = {}
    for image in client.api.images(all=True):
        children.setdefault(image.get("ParentId"), []).append(image["Id"])

    def remove(node: str) -> None:
        for child in children.get(node, ()):
            remove(child)
        try:
            client.images.remove(node, force=True, noprune=False)
        except docker.errors.ImageNotFound:
            pass

    remove(image_id)


@pytest.fixture
def own_base(local_platform):
    """Factory of throw-away base images on the platform's base image; all removed afterwards."""
    import docker

    client = docker.from_env()
    made: list[str] = []

    def make(extra: str) -> str:
        tag = f"hmt-f-base:{uuid.uuid4().hex[:10]}"
        made.append(_make_base(client, tag, f"FROM home-mlops/python-base:3.11\nLABEL hmt-f={tag}\n{extra}\n"))
        return tag

    yield make
    for image_id in made:
        _remove_tree(client, image_id)


def _gateway_build(run, platform, base: str, *extra: str) -> subprocess.CompletedProcess:
    """fastapi-build of a trained run under an hmt-f-* app name, with pipes only (no terminal),
    the result on stdout (--json -); ``extra`` are the global options."""
    env = {**run.env, "AR_NAME": platform.registry, "REGISTRY_USER": platform.user, "REGISTRY_PASSWORD": CANARY}
    return run_cli([*extra, "fastapi-build", "--app", f"hmt-f-{uuid.uuid4().hex[:6]}", "--experiment-id",
                    run.experiment_id, "--run-id", run.run_id, "--no-push", "--base-image", base, "--json", "-"], env,
                   timeout=600, stdin=subprocess.DEVNULL)


# python3 that fails like a broken tool, saying the password it was given (the scrubber must catch it)
BROKEN_PYTHON = (
    "RUN printf '#!/bin/sh\\necho \"venv: cannot create /opt/venv (login password %s)\"\\n"
    "echo \"hmt-f: the step broke here\"\\nexit 3\\n' " + CANARY + " > /usr/local/bin/python3 "
    "&& chmod 755 /usr/local/bin/python3"
)


@pytest.mark.parametrize("log_format", ["plain", "json"])
@pytest.mark.docker  # local_platform skips without a Docker daemon
def test_a_failing_docker_step_shows_its_output_without_a_terminal(log_format, trained_run, local_platform,
                                                                   own_base, tmp_path):
    run = trained_run("tabular-iris-lightgbm")
    base = own_base(BROKEN_PYTHON)
    proc = _gateway_build(run, local_platform, base, "--log-format", log_format)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert CANARY not in proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert result["exit_code"] == 4 and result["summary"].startswith("home-mlops: FAILED in stage 'fastapi-build'")
    tail = result["log_tail"]
    assert re.match(r"Step \d+/\d+ : RUN python3 -m venv /opt/venv", tail[0]), tail
    assert "hmt-f: the step broke here" in tail
    assert "venv: cannot create /opt/venv (login password ***)" in tail
    if log_format == "json":
        records = [json.loads(line) for line in proc.stderr.splitlines()]  # every line parses
        assert all(set(r) == {"time", "level", "stage", "message", "fields"} for r in records)
        messages = [r["message"] for r in records]
        assert "hmt-f: the step broke here" in messages
        assert records[-1]["level"] == "summary" and records[-1]["message"].startswith(result["summary"])
        errors = [r["message"] for r in records if r["level"] == "error"]
        assert any("| hmt-f: the step broke here" in m for m in errors)  # printed again with the error
    else:
        lines = proc.stderr.splitlines()
        assert all(re.match(STAMP + r" \[fastapi-build\] ", line) for line in lines), lines
        assert any(line.endswith("error:   | hmt-f: the step broke here") for line in lines), "\n".join(lines[-30:])
        assert lines[-1].split(" summary: ", 1)[1].startswith(result["summary"])


@pytest.mark.docker  # local_platform skips without a Docker daemon
def test_a_pipeline_without_a_terminal(trained_run, local_platform, tmp_path):
    """Every line stamped and staged, one line per Docker step of both builds, the summary last.
    Its own app name and port (hmt-f-*, 18600-18699); the layers come from Docker's cache."""
    import docker
    from deploy_fixtures import free_test_port

    run = trained_run("tabular-iris-lightgbm")
    app = f"hmt-f-pipe-{run.run_id[:6]}"
    env = {**run.env, "AR_NAME": local_platform.registry, "REGISTRY_USER": local_platform.user,
           "REGISTRY_PASSWORD": local_platform.password, "HOME_MLOPS_PORT": str(free_test_port(range(18600, 18700))),
           "HOME_MLOPS_PLATFORM_DIR": private_platform(tmp_path / "platform")}
    proc = run_cli(["pipeline", "--app", app, "--experiment-id", run.experiment_id, "--run-id", run.run_id,
                    "--json", "-"], env, timeout=900, stdin=subprocess.DEVNULL)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout)
        assert local_platform.password not in proc.stderr + proc.stdout
        assert not CONTROL.search(proc.stderr)
        lines = proc.stderr.splitlines()
        staged = [re.match(STAMP + r" \[([a-z-]+)\] (.*)$", line) for line in lines]
        assert all(staged), [line for line, m in zip(lines, staged) if not m]
        order = [stage for stage, _ in dict.fromkeys((m[1], None) for m in staged) if stage != "pipeline"]
        assert order == ["resolve", "bento-build", "fastapi-build", "deploy"]
        for stage in ("bento-build", "fastapi-build"):  # one line per Docker step, in order, none missing
            steps = [re.match(r"docker \| Step (\d+)/(\d+) : ", m[2]) for m in staged if m[1] == stage]
            steps = [step for step in steps if step]
            assert [int(step[1]) for step in steps] == list(range(1, int(steps[0][2]) + 1)), stage
        summary = result["summary"].splitlines()
        assert summary[0] == f"home-mlops: deployed {app}"
        assert f"  bento image:   {result['bento']['image']} @ {result['bento']['digest']}" in summary
        assert summary[-1] == f"  on this host:  {result['local_url']}/predict"
        printed = [m[2] for m in staged[-len(summary):]]
        # each line of the block carries the prefix, so `grep summary:` finds it whole in a console log
        assert printed == [f"summary: {summary[0]} ({result['seconds']:.1f} s)", *(f"summary: {x}" for x in summary[1:])]
    finally:
        undone = run_cli(["undeploy", "--app", app], env)
        assert undone.returncode == 0, undone.stderr
        client = docker.from_env()
        for role in ("bento", "gateway"):
            for image in client.api.images(name=f"{local_platform.registry}/{app}-{role}"):
                client.images.remove(image["Id"], force=True)


def test_a_deploy_failure_returns_the_model_servers_log_scrubbed(monkeypatch):
    """DeployFailed quotes the container's log (deploy_probe.log_tail); the result gets those lines."""
    from home_mlops.deploy.probe import log_tail
    from home_mlops.errors import DeployFailed
    from home_mlops.results import error_log_tail

    class Container:  # only .logs(): what log_tail reads from a docker container
        def logs(self, tail):
            return f"loading model\nTraceback: boom\x1b[0m password={CANARY}\n".encode()

    monkeypatch.setenv("REGISTRY_PASSWORD", CANARY)
    exc = DeployFailed("model server exited (state exited); its last log lines:\n" + log_tail(Container()),
                       hint="the previous deployment is still serving")
    assert error_log_tail(exc) == ["loading model", "Traceback: boom password=***"]
