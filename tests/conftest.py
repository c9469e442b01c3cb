"""Shared fixtures: an isolated state folder, trained example runs, the local platform.

Trained runs are made once per pytest run and shared by its workers (training is the
slow part); each test that changes state gets its own HOME_MLOPS_HOME instead.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from warm_cli import WarmCli

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "home-mlops")


def docker_reason() -> str | None:
    """Why docker tests cannot run here, or None when they can."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as exc:  # noqa: BLE001
        return f"needs a running Docker daemon (run `home-mlops platform up`): {type(exc).__name__}"
    return None


# Fixtures that need the Docker daemon: a test that uses one (directly or through another
# fixture) gets the `docker` marker, so `make test-fast` (-m "not docker") leaves it out.
# A test module adds its own in DOCKER_FIXTURES = ("name", ...).
DOCKER_FIXTURES = frozenset({"local_platform"})


# The slowest test files, slowest first (seconds of two two-worker `make test` runs on 2 cores,
# `--durations=0` summed per file). make test hands whole files to two xdist workers in
# collection order (--dist loadfile --no-loadscope-reorder): the long ones start first and
# the many short files fill in behind them, so neither worker is left with a long file at the end.
SLOWEST_FIRST = (
    "tests/build/test_images.py",  # 175-238 s
    "tests/build/test_serving_images.py",  # 177-230
    "tests/deploy/test_serving_modes.py",  # 72-107
    "tests/groovy/test_groovy_chain.py",  # 62-73
    "tests/resolve/test_hostile_models.py",  # 51-70
    "tests/resolve/test_resolve_tracking.py",  # 50-71
    "tests/resolve/test_registered_models.py",  # 45-66
    "tests/deploy/test_many_apps.py",  # 51-55
    "tests/test_output.py",  # 42-57
    "tests/deploy/test_deploy.py",  # 39-50
    "tests/gateway/test_hostile_payloads.py",  # 40-44
    "tests/resolve/test_resolve_s3.py",  # 41-43
    "tests/k8s/test_cli_k8s.py",  # 32-40
    "tests/groovy/test_groovy_hostile.py",  # 30-42
    "tests/gateway/test_invocations_mlflow.py",  # 28-34
)


def _slowest_first(items: list) -> None:
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    # the sort is stable: within a file, and among the files not listed, pytest's order stays
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        needs = DOCKER_FIXTURES | set(getattr(item.module, "DOCKER_FIXTURES", ()))
        if needs & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.docker)
    _slowest_first(items)


def pytest_sessionfinish(session, exitstatus) -> None:
    """The run leaves the host's /dev/null a device: a program (ours or a test's) that renames a
    file over a path it was given (`--json /dev/null` once did) breaks every later program's
    "discard this"."""
    import stat

    if hasattr(session.config, "workerinput"):
        return  # the controller checks once, after every worker is done
    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        session.config.get_terminal_writer().line(
            "the test run replaced /dev/null with a regular file (restore it: rm /dev/null; mknod -m 666 /dev/null c 1 3)",
            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@dataclass
class TrainedRun:
    app: str
    experiment_id: str
    run_id: str
    model_id: str | None
    tracking_uri: str
    artifact_root: str
    state: Path
    env: dict = field(default_factory=dict)


def cli_env(state: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("APP_NAME", "EXPERIMENT_ID", "RUN_ID", "NAS", "AR_NAME")}
    env.update({
        "HOME_MLOPS_HOME": str(state),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONWARNINGS": "ignore",
    })
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict, timeout: int = 900, **kw) -> subprocess.CompletedProcess:
    """`home-mlops *args` with its output captured, from this worker's warm interpreter
    (tests/warm_cli.py: the real CLI, without importing mlflow again for every run)."""
    if set(kw) <= {"cwd"} and os.environ.get("HOME_MLOPS_TEST_WARM_CLI") != "0" and WARM_CLI.usable_for(env):
        return WARM_CLI.run(args, env, timeout, **kw)
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, **kw)


# The server's environment only has to start Python as every run's does (cli_env's PATH and
# PYTHONWARNINGS); its state folder is never used.
WARM_CLI = WarmCli(CLI, cli_env(Path(tempfile.gettempdir())))


def train(app: str, state: Path, *args: str) -> TrainedRun:
    env = cli_env(state)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "training" / app / "train.py"), *args],
        env=env, capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = dict(re.findall(r"^(EXPERIMENT_ID|RUN_ID|MODEL_ID)=(\S+)$", proc.stdout, re.M))
    return TrainedRun(
        app=app,
        experiment_id=ids["EXPERIMENT_ID"],
        run_id=ids["RUN_ID"],
        model_id=ids.get("MODEL_ID"),
        tracking_uri=env["MLFLOW_TRACKING_URI"],
        artifact_root=str(state / "mlruns"),
        state=state,
        env=env,
    )


def run_root(tmp_path_factory) -> Path:
    """The folder this pytest run's workers share (pytest-xdist gives each worker its own base
    folder inside it); without workers, the run's own base folder."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """Factory: trained_run(app, *train_args) -> TrainedRun, trained once per argument set for the
    whole run, whichever worker asks first (the other waits on the lock, then reads the ids).

    Training is a CLI start and a fit (10-20 s each on 2 cores); two workers that each trained the
    five apps did that work twice. Each worker gets its own copy of the run's MLflow database and
    its own state folder, so tags a deploy writes and the resolve cache stay in that worker; both
    copies point at the one artifact folder, which nothing writes to after training."""
    from filelock import FileLock

    shared = run_root(tmp_path_factory) / "trained"
    shared.mkdir(exist_ok=True)
    mine = tmp_path_factory.mktemp("trained")
    made: dict[tuple, TrainedRun] = {}

    def make(app: str, *args: str) -> TrainedRun:
        key = (app, *args)
        if key not in made:
            name = re.sub(r"[^A-Za-z0-9.]+", "-", " ".join(key))
            source = shared / name
            with FileLock(str(shared / f"{name}.lock")):
                if not (source / "trained.json").is_file():
                    source.mkdir(exist_ok=True)
                    ran = train(app, source, *args)
                    (source / "trained.json").write_text(json.dumps(
                        {"experiment_id": ran.experiment_id, "run_id": ran.run_id, "model_id": ran.model_id}))
            ids = json.loads((source / "trained.json").read_text())
            state = mine / name
            state.mkdir()
            shutil.copy2(source / "mlflow.db", state / "mlflow.db")
            env = cli_env(state)
            made[key] = TrainedRun(app=app, **ids, tracking_uri=env["MLFLOW_TRACKING_URI"],
                                   artifact_root=str(source / "mlruns"), state=state, env=env)
        return made[key]

    return make


@pytest.fixture(scope="session")
def local_sqlite_store(tmp_path_factory):
    """The resolve tests' MLflow store (sqlite + artifacts: MLflow 3 and 2 layouts, two models in one
    run, a run without a model; tests/resolve/test_resolve_nas.build_store), logged once per session
    for test_resolve_nas, test_cache and test_resolve_tracking. A test that changes it puts it back
    in a finally, or works on a copy (copy_store)."""
    from test_resolve_nas import local_store  # tests/resolve is on sys.path once its tests are collected

    return local_store(tmp_path_factory.mktemp("local-store"))


@dataclass
class LocalPlatform:
    registry: str
    user: str
    password: str


@pytest.fixture(scope="session")
def local_platform() -> LocalPlatform:
    reason = docker_reason()
    if reason:
        pytest.skip(reason)
    from home_mlops.platform import host as platform

    creds = platform.up()
    return LocalPlatform(registry=f"{creds.address}/home-mlops-test", user=creds.user, password=creds.password)


def private_platform(folder: Path) -> str:
    """A platform folder of the test's own (deploy state and history, registry files) that shares
    the host's lock and wheel caches, for HOME_MLOPS_PLATFORM_DIR.

    A build with an empty platform folder resolves its lock and downloads every wheel again
    (hundreds of MB for one model image): a minute or more per build test. Sharing the caches
    is safe: a lock is keyed by its requirements and every wheel is checked against the lock's
    sha256 before it goes into an image."""
    from home_mlops.platform.host import platform_dir

    host = platform_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for cache in ("locks", "wheels"):
        (host / cache).mkdir(parents=True, exist_ok=True)
        link = folder / cache
        if not link.exists():
            link.symlink_to(host / cache, target_is_directory=True)
    return str(folder)


@pytest.fixture
def state(tmp_path) -> Path:
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


def copy_store(src: Path, dst: Path) -> None:
    """A private copy of a shared MLflow store (sqlite + artifacts) for tests that break things."""
    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("cache", "bentoml", "builds"))


def stop_process_group(proc: subprocess.Popen, timeout: float) -> None:
    """Stop a server started with start_new_session=True, its workers included."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_container_ready(url: str, container, seconds: float = 180) -> None:
    """Poll ``url`` (on 127.0.0.1) until 200 with the package's one readiness probe; AssertionError
    with the container's last log if it exits or the time runs out."""
    from home_mlops import readiness

    def stopped() -> None:
        container.reload()
        if container.status == "exited":
            raise readiness.NotReady(url, "the container exited")

    try:
        readiness.wait_ready(url, time.monotonic() + seconds, stopped=stopped, poll=1.0)
    except readiness.NotReady as exc:
        raise AssertionError(f"{container.name} never got ready ({exc.last}):\n"
                             f"{container.logs().decode()[-3000:]}") from None
