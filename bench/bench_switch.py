"""Switch-over benchmark: failed requests and the longest serving gap during a redeploy.

Runs, in one process and against the same stand-in images, N redeploys with our
strategy (SO_REUSEPORT overlap, then graceful drain of the old gateway) and N
with the baseline "recreate" strategy (stop the old gateway, then start the new
one), each under the same loopback load loop, and prints both and their ratio
(absolute times on shared machines vary; the ratio is what to compare).

    .venv/bin/python bench/bench_switch.py [--rounds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import secrets
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

SMOKE = {"dataframe_records": [{"x": 1.0}]}


def one_strategy(strategy: str, rounds: int, images: dict, state: Path) -> dict:
    app = f"hmt-b-bench-{strategy}-{secrets.token_hex(2)}"
    port = fx.free_test_port()
    settings = dp.DeploySettings(port=port, ready_timeout=60, memory="256m", cpus=0.5)

    def release(run: str) -> dp.Release:
        return dp.Release(app, "1", run, "m", images["bento"], images["gateway"], SMOKE)

    runs = [secrets.token_hex(16) for _ in range(rounds + 1)]
    totals = {"strategy": strategy, "rounds": rounds, "requests": 0, "failed": 0, "stale_retries": 0,
              "max_gap_s": [], "switch_s": [], "deploy_s": []}
    try:
        dp.deploy(release(runs[0]), settings, state_base=state)
        for run in runs[1:]:
            load = fx.LoadLoop(port, fresh=2, keepalive=1, max_seconds=120).start()
            try:
                load.wait_for(100)
                t0 = time.monotonic()
                res = dp.deploy(release(run), settings, state_base=state, strategy=strategy)
                load.wait_for(len(load.ok) + len(load.failures) + 100)
            finally:
                load.stop()
            totals["requests"] += len(load.ok) + len(load.failures)
            totals["failed"] += len(load.failures)
            totals["stale_retries"] += load.stale_retries
            totals["max_gap_s"].append(round(load.max_gap(since=t0), 4))
            totals["switch_s"].append(res.switch_seconds)
            totals["deploy_s"].append(res.deploy_seconds)
    finally:
        dp.undeploy(app, state_base=state)
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--gateway-image", help="a local gateway image to use instead of the stand-in "
                        "(e.g. one built from pyhelpers/home_mlops/gateway); it must accept {'x': float} records")
    args = parser.parse_args()

    client = docker_client()
    images = {
        "bento": fx.build_standin_bento(client, f"{fx.STANDIN_BENTO}:ok"),
        "gateway": args.gateway_image or fx.build_standin_gateway(client, f"{fx.STANDIN_GATEWAY}:1"),
    }
    print(f"gateway image: {images['gateway']}")
    with tempfile.TemporaryDirectory(prefix="bench-switch-") as tmp:
        ours = one_strategy("reuseport", args.rounds, images, Path(tmp))
        base = one_strategy("recreate", args.rounds, images, Path(tmp))

    def worst(d):
        return max(d["max_gap_s"])

    result = {
        "ours": ours,
        "baseline": base,
        "failed_ratio": (ours["failed"] / base["failed"]) if base["failed"] else None,
        "max_gap_ratio": round(worst(ours) / worst(base), 4) if worst(base) else None,
    }
    for d in (ours, base):
        print(f"{d['strategy']:>9}: {d['rounds']} redeploys, {d['requests']} requests, {d['failed']} failed, "
              f"{d['stale_retries']} stale keep-alive retries, longest gap without an answer "
              f"{worst(d) * 1000:.0f} ms (per round {[round(g * 1000) for g in d['max_gap_s']]} ms), "
              f"switch {d['switch_s']} s, deploy {d['deploy_s']} s")
    print(f"ratio ours/baseline: failed requests {ours['failed']}/{base['failed']}, "
          f"longest gap {result['max_gap_ratio']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
