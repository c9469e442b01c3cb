"""Many apps on one host: N apps (1, 2, 4) deploying at once through the real CLI.

For each N: N first deploys started together (time until all N answer), then the N
apps redeployed together while every one of them - and a bystander app deployed
before the bench - is under loopback load: failed requests on already served
apps (goal 0) and the time until all N serve the new run. Stand-in images
(tests/deploy_fixtures.py), ports 18200-18299, app names hmt-b-bench-*.

    .venv/bin/python bench/bench_many_apps.py [--sizes 1,2,4] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "pyhelpers"))

import deploy_fixtures as fx  # noqa: E402
from home_mlops.deploy import switch as dp  # noqa: E402
from home_mlops.platform.host import docker_client  # noqa: E402

CLI = str(Path(sys.executable).parent / "home-mlops")


def deploy_all(apps: list[tuple[str, int]], images: dict, env: dict, tmp: Path) -> tuple[float, list[str]]:
    """Start one `home-mlops deploy` per app at the same moment; seconds until every one serves its new run."""
    runs = [secrets.token_hex(16) for _ in apps]
    started = time.monotonic()
    procs = [subprocess.Popen(
        [CLI, "deploy", "--app", app, "--experiment-id", "1", "--run-id", run, "--bento-image", images["bento"],
         "--gateway-image", images["gateway"], "--port", str(port), "--memory", "256m", "--cpus", "0.5",
         "--ready-timeout", "120", "--json", str(tmp / f"{app}.json")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for (app, port), run in zip(apps, runs)]
    for proc, (app, _) in zip(procs, apps):
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"deploy of {app} failed ({proc.returncode}):\n{err[-2000:]}")
    seconds = time.monotonic() - started
    for (app, port), run in zip(apps, runs):
        load = fx.LoadLoop(port, fresh=1, keepalive=0, max_requests=1).start()
        load.wait_for(1)
        load.stop()
        if not load.ok or load.ok[0][1] != run:
            raise SystemExit(f"{app} does not serve run {run} after its deploy: {load.failures[:1]}")
    return round(seconds, 2), runs


def one_size(n: int, images: dict, env: dict, tmp: Path, bystander: fx.LoadLoop) -> dict:
    apps: list[tuple[str, int]] = []
    for i in range(n):
        apps.append((f"hmt-b-bench-{n}x{i}-{secrets.token_hex(2)}",
                     fx.free_test_port(exclude=frozenset(p for _, p in apps))))
    try:
        first_s, _ = deploy_all(apps, images, env, tmp)
        loads = [fx.LoadLoop(port, fresh=1, keepalive=1, max_seconds=600).start() for _, port in apps]
        for load in loads:
            load.wait_for(20)
        by_failed, by_total = len(bystander.failures), len(bystander.ok) + len(bystander.failures)
        try:
            redeploy_s, _ = deploy_all(apps, images, env, tmp)
            time.sleep(0.5)
        finally:
            for load in loads:
                load.stop()
        return {
            "apps": n, "first_deploy_all_serving_s": first_s, "redeploy_all_serving_s": redeploy_s,
            "requests_to_served_apps": sum(len(x.ok) + len(x.failures) for x in loads),
            "failed_on_served_apps": sum(len(x.failures) for x in loads),
            "failure_examples": [f for x in loads for f in x.failures[:2]],
            "bystander_requests": len(bystander.ok) + len(bystander.failures) - by_total,
            "bystander_failed": len(bystander.failures) - by_failed,
        }
    finally:
        for app, _ in apps:
            dp.undeploy(app, state_base=Path(env["HOME_MLOPS_PLATFORM_DIR"]) / "deploy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    client = docker_client()
    images = {"bento": fx.build_standin_bento(client, f"{fx.STANDIN_BENTO}:ok"),
              "gateway": fx.build_standin_gateway(client, f"{fx.STANDIN_GATEWAY}:1")}
    with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "HOME_MLOPS_PLATFORM_DIR": str(tmp / "platform"), "HOME_MLOPS_HOME": str(tmp / "home"),
               "PYTHONWARNINGS": "ignore"}
        state = tmp / "platform" / "deploy"
        bystander_app, bystander_port = f"hmt-b-bench-bystander-{secrets.token_hex(2)}", fx.free_test_port()
        dp.deploy(dp.Release(bystander_app, "1", secrets.token_hex(16), "m", images["bento"], images["gateway"]),
                  dp.DeploySettings(port=bystander_port, ready_timeout=60), state_base=state)
        bystander = fx.LoadLoop(bystander_port, fresh=1, keepalive=1, max_seconds=3600).start()
        try:
            results = [one_size(n, images, env, tmp, bystander) for n in sizes]
        finally:
            bystander.stop()
            dp.undeploy(bystander_app, state_base=state)

    print(f"{'apps':>4}  {'first deploys: all serving (s)':>30}  {'redeploys: all serving (s)':>26}  "
          f"{'requests to served apps':>23}  {'failed':>6}  {'bystander req/failed':>20}")
    for r in results:
        print(f"{r['apps']:>4}  {r['first_deploy_all_serving_s']:>30}  {r['redeploy_all_serving_s']:>26}  "
              f"{r['requests_to_served_apps']:>23}  {r['failed_on_served_apps']:>6}  "
              f"{str(r['bystander_requests']) + '/' + str(r['bystander_failed']):>20}")
        for example in r["failure_examples"]:
            print(f"      failure: {example}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
