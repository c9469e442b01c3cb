"""Serving modes side by side (issue 16): bento, bento+gateway and fastapi vs `mlflow models serve`.

For two models, in one run on the same machine:
- iris: `training/tabular-iris-multi-classifier` (LogisticRegression, 4 doubles);
- pipeline: a mixed-type scikit-learn pipeline trained here into the temp MLflow store
  (StandardScaler on double + long columns, OneHotEncoder on string columns, a random
  forest), logged with its signature and input example.

Each model's images are built with the CLI (`bento-build --serving bento`, `fastapi-build
--serving bento+gateway` / `--serving fastapi`, all `--no-push`) and each mode is deployed
alone with home_mlops.deploy.switch.deploy on a free loopback port (1 CPU, the default),
measured, and undeployed; then `mlflow models serve --env-manager local -w 1` serves the
same model folder. Per target, on 127.0.0.1 only:

- latency: 1 keep-alive connection, 50 warm-up + 500 sequential 1-row requests, p50/p99;
- throughput: wrk (POST, 1-row body) at 16 and at 64 connections, 10 s each, with its
  non-2xx count (503s are the front door shedding load on purpose), socket timeouts
  (a client waiting > 5 s) and p99 latency;
- image sizes (docker's Size), and for iris BentoML's default containerize of our Bento
  (bench_build.bentoml_default, patched for PEP 668 and the host CA; `--skip-bentoml` skips it).

The front door's own API per target: bento `POST /predict {"inputs": [record]}`, the
gateway and the server `POST /predict {"dataframe_records": [record]}`, mlflow
`POST /invocations {"dataframe_records": [record]}`. Prints a table of the figures and
one of the issue's ratios with goal and met/not met; never asserts. Removes what it made.

    .venv/bin/python bench/bench_serving.py [--requests 500] [--seconds 10] [--skip-bentoml] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_build import (  # noqa: E402
    APP, VENV_BIN, bentoml_default, cli, cli_env, image_mb, remove_image, run_args, train,
)
from bench_gateway import LOOP, free_port, latency, wait_ready  # noqa: E402

MODES = ("bento", "bento+gateway", "fastapi")
FRONT = {"bento": "bento", "bento+gateway": "gateway", "fastapi": "server"}

PIPELINE_TRAIN = r'''
import os, sys
import numpy as np, pandas as pd, mlflow, mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

rng = np.random.default_rng(7)
n = 3000
X = pd.DataFrame({
    "income": rng.normal(50_000, 15_000, n), "ratio": rng.random(n),
    "age": rng.integers(18, 90, n).astype("int64"), "visits": rng.integers(0, 40, n).astype("int64"),
    "city": rng.choice(["oslo", "lyon", "porto", "graz", "turku"], n), "plan": rng.choice(["free", "pro", "team"], n),
})
y = ((X["income"] > 52_000) & (X["plan"] != "free") | (X["visits"] > 30)).astype(int)
model = Pipeline([
    ("prep", ColumnTransformer([("num", StandardScaler(), ["income", "ratio", "age", "visits"]),
                                ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"])])),
    ("forest", RandomForestClassifier(n_estimators=60, max_depth=8, random_state=7, n_jobs=1)),
]).fit(X, y)
mlflow.set_experiment("bench-serving-pipeline")
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(3),
                                    signature=infer_signature(X, model.predict(X)), serialization_format="cloudpickle")
    exp = run.info.experiment_id
print(f"EXPERIMENT_ID={exp}")
print(f"RUN_ID={run.info.run_id}")
print(f"MODEL_ID={info.model_id}")
'''


def train_pipeline(state: Path) -> dict:
    # cwd: a new experiment's artifacts default to ./mlruns; keep them in the bench's state folder
    proc = subprocess.run([sys.executable, "-c", PIPELINE_TRAIN], env=cli_env(state), capture_output=True, text=True,
                          timeout=900, cwd=state)
    if proc.returncode != 0:
        raise SystemExit(f"training the pipeline failed:\n{proc.stderr[-3000:]}")
    ids = dict(re.findall(r"^(EXPERIMENT_ID|RUN_ID|MODEL_ID)=(\S+)$", proc.stdout, re.M))
    return {"experiment_id": ids["EXPERIMENT_ID"], "run_id": ids["RUN_ID"], "model_id": ids.get("MODEL_ID")}


def wrk(url: str, body: dict, conns: int, seconds: int, tmp: Path) -> dict:
    """wrk with a POST body: req/s, non-2xx, socket errors (timeouts = clients that waited > 5 s), p99 ms."""
    lua = tmp / f"post-{secrets.token_hex(3)}.lua"
    payload = json.dumps(body).replace("\\", "\\\\").replace('"', '\\"')
    lua.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = "{payload}"\n')
    proc = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "--latency", "-s", str(lua),
                           url], capture_output=True, text=True, timeout=seconds + 60)
    out = proc.stdout

    def number(pattern: str, default: float = 0.0) -> float:
        found = re.search(pattern, out)
        return float(found[1]) if found else default

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    p99 = re.search(r"99%\s+(\S+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = int(number(r"(\d+) requests in"))
    non2xx = int(number(r"Non-2xx or 3xx responses: (\d+)"))
    return {"rps": number(r"Requests/sec:\s+([\d.]+)"), "requests": requests, "non2xx": non2xx,
            "ok_rps": round(number(r"Requests/sec:\s+([\d.]+)") * (1 - non2xx / max(requests, 1)), 1),
            "timeouts": int(sock[4]) if sock else 0,
            "socket_errors": sum(int(v) for v in sock.groups()[:3]) if sock else 0,
            "p99_ms": round(ms(p99[1]), 1) if p99 else None}


def sample_answer(url: str, body: dict) -> dict:
    """One request after the load: its status and Server-Timing split (where the time goes)."""
    import httpx

    resp = httpx.post(url, json=body, trust_env=False, timeout=10)
    return {"status": resp.status_code, "server_timing": resp.headers.get("server-timing", "")}


def measure(name: str, url: str, body: dict, args, tmp: Path) -> dict:
    lat = latency(url, body, args.warmup, args.requests)
    load = {str(c): wrk(url, body, c, args.seconds, tmp) for c in (16, 64)}
    print(f"  {name:14s} p50 {lat['p50_ms']} ms p99 {lat['p99_ms']} ms; "
          + "; ".join(f"{c} conns {v['rps']:.0f} req/s ({v['non2xx']} non-2xx, {v['timeouts']} timeouts, "
                      f"p99 {v['p99_ms']} ms)" for c, v in load.items()), flush=True)
    return {"latency": lat, "load": load, "sample": sample_answer(url, body)}


def one_model(label: str, run: dict, state: Path, tmp: Path, registry: str, args, client, made: list[str]) -> dict:
    from home_mlops.deploy import switch as dp
    from home_mlops.deploy.app_settings import DeploySettings

    env = cli_env(state)
    app = f"bench-sv-{label}-{secrets.token_hex(2)}"
    resolved, _ = cli(["resolve", "--experiment-id", run["experiment_id"], "--run-id", run["run_id"]], env,
                      tmp / f"{label}-resolve.json")
    record = resolved["input_example"][0]
    out: dict = {"app": app, "record": record, "images": {}, "targets": {}}
    images: dict[str, str] = {}
    for command, mode in (("bento-build", "bento"), ("fastapi-build", "bento+gateway"), ("fastapi-build", "fastapi")):
        print(f"{label}: {command} --serving {mode} ...", flush=True)
        result, wall = cli([command, "--no-push", "--serving", mode, *run_args(run, app, registry)], env,
                           tmp / f"{label}-{command}-{mode}.json")
        images[result["role"]] = result["image"]
        made.append(result["image"])
        out["images"][result["role"]] = {"image": result["image"], "mb": round(image_mb(client, result["image"])),
                                         "build_wall_s": round(wall, 1)}
    if label == "iris" and not args.skip_bentoml:
        print("iris: BentoML's default containerize of the same Bento (nocache, patched) ...", flush=True)
        bm_ref = f"{registry}/{app}-bentoml-default:bench"
        bm = bentoml_default(client, state, result_bento_tag(tmp, label), bm_ref, patched_only=True)
        if bm.get("ok"):
            made.append(bm_ref)
        out["bentoml_default"] = bm

    bodies = {"bento": {"inputs": [record]}, "gateway": {"dataframe_records": [record]},
              "server": {"dataframe_records": [record]}}
    for mode in MODES:
        port = free_port()
        release = dp.Release(app, run["experiment_id"], run["run_id"], run.get("model_id") or "",
                             images["bento"] if mode != "fastapi" else "",
                             images["gateway"] if mode == "bento+gateway" else "",
                             {"dataframe_records": [record]}, images["server"] if mode == "fastapi" else "")
        print(f"{label}: deploying {mode} on {LOOP}:{port} ...", flush=True)
        try:
            result = dp.deploy(release, DeploySettings(port=port, bind=LOOP, ready_timeout=300, serving=mode,
                                                       cpus=args.cpus), state_base=tmp / "deploy")
            time.sleep(2)
            front = FRONT[mode]
            out["targets"][mode] = measure(mode, f"http://{LOOP}:{port}/predict", bodies[front], args, tmp)
            out["targets"][mode]["deploy_seconds"] = result.deploy_seconds
        finally:
            dp.undeploy(app, state_base=tmp / "deploy")

    mport = free_port()
    menv = {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env['PATH']}", "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    log = open(tmp / f"{label}-mlflow.log", "wb")
    proc = subprocess.Popen([str(VENV_BIN / "mlflow"), "models", "serve", "-m", resolved["local_path"], "--env-manager",
                             "local", "-h", LOOP, "-p", str(mport), "-w", str(max(1, int(args.cpus)))],
                            env=menv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(f"http://{LOOP}:{mport}/ping", 180)
        out["targets"]["mlflow serve"] = measure("mlflow serve", f"http://{LOOP}:{mport}/invocations",
                                                 {"dataframe_records": [record]}, args, tmp)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    return out


def result_bento_tag(tmp: Path, label: str) -> str:
    return json.loads((tmp / f"{label}-bento-build-bento.json").read_text())["bento_tag"]


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def figures_table(label: str, res: dict) -> list[str]:
    lines = [f"**{label}** (1-row requests; image sizes: " + ", ".join(
        f"{role} {v['mb']} MB" for role, v in res["images"].items()) + (
        f", BentoML default containerize {res['bentoml_default']['mb']} MB" if res.get("bentoml_default", {}).get("ok")
        else "") + ")", "",
        "| target | p50 ms | p99 ms | req/s 16 conns | req/s 64 conns | non-2xx 16/64 | client time-outs 16/64 | "
        "p99 ms at 64 |", "|---|---|---|---|---|---|---|---|"]
    for name, t in res["targets"].items():
        a, b = t["load"]["16"], t["load"]["64"]
        lines.append(f"| {name} | {t['latency']['p50_ms']} | {t['latency']['p99_ms']} | {a['rps']:.0f} | {b['rps']:.0f} "
                     f"| {a['non2xx']}/{b['non2xx']} | {a['timeouts']}/{b['timeouts']} | {b['p99_ms']} |")
    return lines


def ratios(label: str, res: dict) -> list[str]:
    t = res["targets"]
    rows = []
    if "fastapi" in t and "mlflow serve" in t:
        server, peer = t["fastapi"], t["mlflow serve"]
        r = server["load"]["16"]["ok_rps"] / max(peer["load"]["16"]["ok_rps"], 1e-9)
        rows.append((f"{label}: fastapi req/s / mlflow serve req/s (16 conns)", f"{r:.2f}", ">= 2", r >= 2))
        p = server["latency"]["p50_ms"] / peer["latency"]["p50_ms"]
        goal = 0.5 if label == "iris" else 1.0
        rows.append((f"{label}: fastapi p50 / mlflow serve p50", f"{p:.2f}", f"<= {goal}", p <= goal))
    if "bento" in t and "bento+gateway" in t:
        added = t["bento+gateway"]["latency"]["p50_ms"] - t["bento"]["latency"]["p50_ms"]
        rows.append((f"{label}: gateway hop p50 (bento+gateway - bento)", f"{added:+.2f} ms", "<= +0.5 ms", added <= 0.5))
        r = t["bento+gateway"]["load"]["16"]["ok_rps"] / max(t["bento"]["load"]["16"]["ok_rps"], 1e-9)
        rows.append((f"{label}: bento+gateway req/s / bento req/s (16 conns)", f"{r:.2f}", ">= 0.9", r >= 0.9))
    for name in (*MODES, "mlflow serve"):
        if name in t:
            a, b = t[name]["load"]["16"], t[name]["load"]["64"]
            r = b["rps"] / max(a["rps"], 1e-9)
            goal_text = ">= 0.9, no time-outs" if name != "mlflow serve" else "(peer)"
            rows.append((f"{label}: {name} req/s at 64 / at 16 conns", f"{r:.2f} ({b['timeouts']} time-outs)",
                         goal_text, (r >= 0.9 and b["timeouts"] == 0) if name != "mlflow serve" else None))
    bm = res.get("bentoml_default") or {}
    if bm.get("ok"):
        r = res["images"]["server"]["mb"] / bm["mb"]
        rows.append((f"{label}: server image / BentoML default containerize", f"{r:.3f}", "<= 0.25", r <= 0.25))
    r = res["images"]["server"]["mb"] / res["images"]["bento"]["mb"]
    rows.append((f"{label}: server image / our bento image", f"{r:.3f}", "(reference)", None))
    return [f"| {a} | {b} | {c} | {'' if d is None else verdict(d)} |" for a, b, c, d in rows]


def render(res: dict) -> str:
    out = [f"Serving benchmark, {res['date']} (`.venv/bin/python bench/bench_serving.py`; latency: 1 connection, "
           f"{res['warmup']} warm-up + {res['requests']} sequential requests; load: wrk, {res['seconds']} s per "
           f"concurrency; every deploy {res['cpus']:g} CPU, mlflow serve -w {max(1, int(res['cpus']))})", ""]
    for label, model in res["models"].items():
        out += figures_table(label, model) + [""]
    out += ["| ratio | value | goal | |", "|---|---|---|---|"]
    for label, model in res["models"].items():
        out += ratios(label, model)
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--cpus", type=float, default=1.0, help="CPUs of each deploy (the server's workers follow)")
    parser.add_argument("--models", default="iris,pipeline", help="comma-separated: iris, pipeline")
    parser.add_argument("--skip-bentoml", action="store_true", help="do not build BentoML's default image for iris")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk (apt-get install wrk)")
    from home_mlops.platform.host import docker_client

    client = docker_client()
    token = secrets.token_hex(3)
    registry = f"127.0.0.1:5000/bench-{token}"
    res: dict = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "requests": args.requests,
                 "warmup": args.warmup, "seconds": args.seconds, "cpus": args.cpus, "models": {}}
    made: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_s:
            tmp = Path(tmp_s)
            state = tmp / "state"
            state.mkdir()
            for label in args.models.split(","):
                print(f"training {label} ...", flush=True)
                run = train(APP, state) if label == "iris" else train_pipeline(state)
                res["models"][label] = one_model(label, run, state, tmp, registry, args, client, made)
    finally:
        for ref in made:
            remove_image(client, ref)
    print()
    text = render(res)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
