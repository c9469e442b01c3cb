"""k8s render: what rendering an app's manifests costs, against checking the same objects with the
schema (kubernetes-validate --strict, what the tests do), in one run; and how big the manifests are.

Every example app of jobs/projects.yaml in every serving mode (15 releases), rendered (client models
-> dicts -> sorted YAML) ROUNDS times; the baseline validates the same objects once per round.

    .venv/bin/python bench/bench_k8s.py [--rounds 20] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "k8s"))
sys.path.insert(0, str(ROOT / "pyhelpers"))

import kubernetes_validate  # noqa: E402

from home_mlops.k8s.render import SCHEMA_VERSION, render, to_yaml  # noqa: E402
from k8s_fixtures import APPS, MODES, release_for, settings_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    cases = [(release_for(app, mode), settings_for(app, mode, ingress_host=f"{app}.home.lan"))
             for app in APPS for mode in MODES]
    render_s, validate_s, sizes = [], [], []
    for _ in range(args.rounds):
        started = time.perf_counter()
        rendered = [[to_yaml(o) for o in render(release, settings)] for release, settings in cases]
        render_s.append((time.perf_counter() - started) / len(cases))
        sizes = [sum(len(text) for text in texts) for texts in rendered]
        objects = [o for release, settings in cases for o in render(release, settings)]
        started = time.perf_counter()
        for obj in objects:
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
        validate_s.append((time.perf_counter() - started) / len(cases))
    result = {
        "releases": len(cases), "rounds": args.rounds,
        "render_ms_per_release_p50": round(statistics.median(render_s) * 1000, 2),
        "validate_ms_per_release_p50": round(statistics.median(validate_s) * 1000, 2),
        "ratio_render_to_validate": round(statistics.median(render_s) / statistics.median(validate_s), 3),
        "yaml_bytes_per_release_min_max": [min(sizes), max(sizes)],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
