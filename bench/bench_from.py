"""--from benchmark: a Jenkins-like build's stages with and without resolving the run again.

In a fresh temporary HOME_MLOPS_HOME, trains tabular-iris-multi-classifier, serves that store
with a real `mlflow server` (HTTP, as Jenkins agents use it) and measures in the same run:

1. the resolve step alone, in one process (warm cache and warm imports both ways): ``resolve_run``
   against the tracking server vs ``--from``'s load + cache re-hash (resolve/earlier.py), median of N;
   and the same in a new Python process each time (imports included: what each stage pays);
2. three stage commands as the Jenkinsfile runs them, through the real CLI: without --from
   each resolves (3 resolves); with --from the first resolves and writes its result, the
   next two start from the previous file (1 resolve). The stage is `fastapi-build --no-push`
   of an image that already exists (``reused``), so the difference is the resolve work.

Prints resolve counts, seconds and ratios (with/without); never asserts absolute times.
Removes the image it tagged and its tracking server.

    .venv/bin/python bench/bench_from.py [--repeat 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pyhelpers"))
VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "home-mlops")
APP = "tabular-iris-multi-classifier"
BENCH_APP = "hmt-r-bench"
PORT = 19710  # helper R's port range
RESOLVES = re.compile(r"finding the model of run")


def free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def train(state: Path, env: dict) -> tuple[str, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "training" / APP / "train.py")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1200)
    proc.check_returncode()
    ids = dict(re.findall(r"^(EXPERIMENT_ID|RUN_ID)=(\S+)$", proc.stdout, re.M))
    return ids["EXPERIMENT_ID"], ids["RUN_ID"]


def start_server(state: Path, env: dict) -> subprocess.Popen:
    if not free(PORT):
        sys.exit(f"port {PORT} is taken: stop what listens there")
    proc = subprocess.Popen([str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(PORT),
                             "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
                             "--artifacts-destination", (state / "mlruns").as_uri(), "--serve-artifacts"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import httpx

    for _ in range(240):
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit("the MLflow server did not start")


def cli(args: list[str], env: dict) -> tuple[float, int, subprocess.CompletedProcess]:
    started = time.monotonic()
    proc = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"home-mlops {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, len(RESOLVES.findall(proc.stderr)), proc


def resolve_step(experiment_id: str, run_id: str, tracking: str, result_file: Path, repeat: int) -> dict:
    """The resolve work alone, in process: full resolve vs --from (load + re-hash), median seconds."""
    from home_mlops.cli.run_options import resolve_run
    from home_mlops.params import JobParams
    from home_mlops.resolve import earlier

    params = JobParams.parse(app=BENCH_APP, experiment_id=experiment_id, run_id=run_id)
    full, start = [], []
    for _ in range(repeat):
        t = time.monotonic()
        resolve_run(params, tracking, None)
        full.append(time.monotonic() - t)
        t = time.monotonic()
        resolve_run(params, tracking, None, None, earlier.load(str(result_file)))
        start.append(time.monotonic() - t)
    return {"resolve_s": statistics.median(full), "from_s": statistics.median(start),
            "ratio_from_over_resolve": statistics.median(start) / statistics.median(full)}


COLD = """
import sys, time
started = time.monotonic()
import home_mlops.cli.app
from home_mlops.cli.run_options import resolve_run
from home_mlops.params import JobParams
from home_mlops.resolve import earlier
exp, run, uri, path = sys.argv[1:5]
params = JobParams.parse(app="hmt-r-bench", experiment_id=exp, run_id=run)
resolve_run(params, uri, None, None, earlier.load(path) if path != "-" else None)
print(time.monotonic() - started)
"""


def resolve_step_cold(experiment_id: str, run_id: str, tracking: str, result_file: Path, repeat: int, env: dict) -> dict:
    """The same in a new process each time (what each Jenkins stage pays): imports + resolve vs imports + --from."""
    def once(path: str) -> float:
        proc = subprocess.run([sys.executable, "-c", COLD, experiment_id, run_id, tracking, path], env=env,
                              capture_output=True, text=True, timeout=600)
        proc.check_returncode()
        return float(proc.stdout.strip().splitlines()[-1])

    full, start = [], []
    for _ in range(repeat):  # interleaved
        full.append(once("-"))
        start.append(once(str(result_file)))
    return {"resolve_s": statistics.median(full), "from_s": statistics.median(start),
            "ratio_from_over_resolve": statistics.median(start) / statistics.median(full)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="hmt-r-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("APP_NAME", "EXPERIMENT_ID", "RUN_ID", "NAS", "AR_NAME")}
    env.update({"HOME_MLOPS_HOME": str(state), "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
                "PYTHONWARNINGS": "ignore", "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"})
    experiment_id, run_id = train(state, env)
    server = start_server(state, env)
    tracking = f"http://127.0.0.1:{PORT}"
    env["MLFLOW_TRACKING_URI"] = tracking
    os.environ.update({"HOME_MLOPS_HOME": str(state), "MLFLOW_TRACKING_URI": tracking})
    image = None
    try:
        base = ["fastapi-build", "--app", BENCH_APP, "--experiment-id", experiment_id, "--run-id", run_id,
                "--no-push"]
        first = state / "stage0.json"
        cli([*base, "--json", str(first)], env)  # warm-up: builds the image once, fills the cache
        image = json.loads(first.read_text())["image"]

        # Interleaved (one stage without, one with) so the machine's load falls on both alike.
        without, with_from, previous = [], [], None
        for i in range(3):
            without.append(cli(base, env))
            out = state / f"stage{i + 1}.json"
            stage = [*base, "--json", str(out)] + (["--from", str(previous)] if previous else [])
            with_from.append(cli(stage, env))
            previous = out
        step = resolve_step(experiment_id, run_id, tracking, first, args.repeat)
        cold = resolve_step_cold(experiment_id, run_id, tracking, first, args.repeat,
                                 {**env, "PYTHONPATH": str(ROOT / "pyhelpers")})
        report = {
            "stages_without_from": {"resolves": sum(r for _, r, _ in without),
                                    "seconds": round(sum(s for s, _, _ in without), 2)},
            "stages_with_from": {"resolves": sum(r for _, r, _ in with_from),
                                 "seconds": round(sum(s for s, _, _ in with_from), 2)},
            "resolve_step_warm_process": {k: round(v, 3) for k, v in step.items()},
            "resolve_step_new_process": {k: round(v, 3) for k, v in cold.items()},
        }
        report["stages_ratio_with_over_without"] = round(
            report["stages_with_from"]["seconds"] / report["stages_without_from"]["seconds"], 3)
        print(json.dumps(report, indent=2))
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(report, indent=2) + "\n")
    finally:
        if image:  # this benchmark's own tag (app hmt-r-bench)
            import docker

            docker.from_env().images.remove(image)
        os.killpg(server.pid, 15)  # the server and its workers (their own session)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
