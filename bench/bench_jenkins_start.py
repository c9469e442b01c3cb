"""Dockerized Jenkins start: the rebuild decision against a rebuild, in one run.

docker/jenkins/start.sh used to rebuild the image on every start; now it hashes what the
image is made from and skips `docker build` when the image's label holds the same digest.
This measures, on the same context (the helper's wheels from the host's wheel cache, as
start.sh assembles them):

  ours      the decision for an unchanged start: start.sh's own inputs_digest + label check
  baseline  what every start cost before, at least: building the helper layer again
            (`docker build --no-cache --network none` of the Dockerfile's helper install on
            the platform's base image; the old start also re-downloaded every plugin)

and prints both and their ratio (absolute times on a shared machine vary). Needs Docker and
home-mlops/python-base:3.11; no Jenkins image (the Jenkins layers are not part of it).

    .venv/bin/python bench/bench_jenkins_start.py [--rounds 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "docker" / "jenkins" / "start.sh"
DOCKERFILE = ROOT / "docker" / "jenkins" / "Dockerfile"
IMAGE = "hmt-j1/bench-jenkins-helper:latest"


def _functions(*names: str) -> str:
    text = START.read_text()
    return "\n".join(re.search(rf"^{n}\(\) {{\n.*?^}}\n", text, re.M | re.S).group(0) for n in names)


def _bash(script: str, *args: str) -> subprocess.CompletedProcess:
    prelude = ("set -euo pipefail\n"
               f"repo={ROOT} python={sys.executable} image={IMAGE} base=home-mlops/python-base:3.11 "
               "python_base=home-mlops/python-base:3.11 version=bench inputs_label=io.home-mlops.jenkins.inputs\n"
               "die() { echo \"$*\" >&2; exit 1; }\n")
    return subprocess.run(["bash", "-c", prelude + script, "bench", *args], capture_output=True, text=True, check=True)


def helper_context(ctx: Path) -> None:
    """The Dockerfile's helper layer alone, with the wheels start.sh would put in the context."""
    wheels = ctx / "docker" / "jenkins" / "build" / "wheels"
    wheels.mkdir(parents=True)
    _bash(_functions("helper_wheels") + 'helper_wheels "$1"\n', str(wheels))
    text = DOCKERFILE.read_text()
    copy = re.search(r"^COPY docker/jenkins/build/wheels/.*$", text, re.M).group(0)
    run = re.search(r"^RUN python3 -m venv.*?(?<!\\)\n", text, re.M | re.S).group(0)
    (ctx / "Dockerfile").write_text(f"FROM home-mlops/python-base:3.11\n{copy}\n{run}")


def timed(label: str, fn) -> float:
    start = time.perf_counter()
    fn()
    took = time.perf_counter() - start
    print(f"  {label}: {took:.2f} s", flush=True)  # as it goes: a slow machine still shows something
    return took


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    ctx = Path(tempfile.mkdtemp(prefix="hmt-j1-bench-"))
    try:
        helper_context(ctx)
        # the digest covers the context's wheels only, not the checkout's sources: other work in
        # the tree between the labelled build and the decision must not count as a change
        os.environ["HOME_MLOPS_JENKINS_WHEELS"] = str(ctx / "docker" / "jenkins" / "build" / "wheels")
        size = sum(p.stat().st_size for p in ctx.rglob("*.whl"))
        decide = _functions("inputs_digest", "build_if_changed")

        def rebuild() -> None:
            subprocess.run(["docker", "build", "--no-cache", "--network", "none", "-q", "-t", IMAGE,
                            "--label", "io.home-mlops.jenkins.inputs=stale", str(ctx)],
                           check=True, capture_output=True)

        def decision() -> None:
            out = _bash(decide + 'build_if_changed "$1"\n', str(ctx))
            assert "is up to date" in out.stderr, out.stderr

        baseline = [timed("rebuild of the helper layer", rebuild) for _ in range(args.rounds)]
        # label the image with the real digest: the next starts find nothing changed
        digest = _bash(_functions("inputs_digest") + 'inputs_digest "$1"\n', str(ctx)).stdout.strip()
        subprocess.run(["docker", "build", "--network", "none", "-q", "-t", IMAGE,
                        "--label", f"io.home-mlops.jenkins.inputs={digest}", str(ctx)], check=True, capture_output=True)
        ours = [timed("unchanged start, decision", decision) for _ in range(args.rounds)]
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
        subprocess.run(["docker", "rmi", "-f", IMAGE], capture_output=True)
    result = {
        "wheels_mb": round(size / 1e6, 1),
        "ours_unchanged_start_s": round(min(ours), 2),
        "baseline_rebuild_s": round(min(baseline), 2),
        "ratio": round(min(ours) / min(baseline), 4),
        "rounds": args.rounds,
    }
    print(f"helper wheels: {result['wheels_mb']} MB")
    print(f"unchanged start, rebuild decision (ours): {result['ours_unchanged_start_s']} s")
    print(f"rebuild of the helper layer (baseline):   {result['baseline_rebuild_s']} s")
    print(f"ratio: {result['ratio']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still removes the image
    sys.exit(main())
