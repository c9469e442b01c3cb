"""Serving benchmark: the gateway's cost over BentoML direct, and `mlflow models serve` as a peer.

Trains tabular-iris-multi-classifier in a throwaway state folder, builds the pair
(`home-mlops bento-build` / `fastapi-build --no-push` under a unique registry
prefix and app name), deploys it with home_mlops.deploy.switch.deploy on free loopback
ports, starts `mlflow models serve --env-manager local` for the same model, then
measures on 127.0.0.1 only:

(a) latency: 1 connection, sequential 1-row requests (warm-up, then N timed), p50/p99;
(b) throughput: 16 concurrent connections for a fixed time (wrk with a POST lua
    script when installed, else a threaded httpx loop);
(c) overload: the same at 64 connections for bento direct and the gateway (issue 16:
    req/s holds >= 0.9x, what cannot be served in time is a quick 503, not a time-out).

Targets: BentoML direct (`POST /predict {"inputs": [record]}`), the gateway
(`POST /predict {"dataframe_records": [record]}`), mlflow serve
(`POST /invocations {"dataframe_records": [record]}`). Prints ratios against
BentoML direct measured in the same run; never asserts absolute times. Undeploys
and stops everything it started.

    .venv/bin/python bench/bench_gateway.py [--requests 500] [--warmup 50] [--seconds 10] [--json out.json]

``--checks REV`` measures only what the payload checks cost: ``python -m gateway``
from git revision REV and from the working tree, side by side in front of the
same stand-in model server (a thread answering one 0 per row), timed in
alternating blocks by the same client: p50 for a 1-row record and for a
10 000-row ``dataframe_records`` body (about 1 MB), and the gateway process's own
CPU time per request (from /proc: far steadier than wall time on a busy machine).
No Docker, no training.

    .venv/bin/python bench/bench_gateway.py --checks 002e464 [--requests 500]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_build import APP, ROOT, VENV_BIN, cli, cli_env, remove_image, run_args, train  # noqa: E402

sys.path.insert(0, str(ROOT / "pyhelpers"))
LOOP = "127.0.0.1"


def http_client():
    import httpx

    return httpx.Client(trust_env=False, timeout=httpx.Timeout(10.0, connect=2.0))


def wait_ready(url: str, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    with http_client() as c:
        while time.monotonic() < deadline:
            try:
                if c.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise SystemExit(f"{url} did not become ready in {seconds} s")


def latency(url: str, body: dict, warmup: int, n: int) -> dict:
    """One keep-alive connection, sequential requests; milliseconds."""
    times = []
    errors = 0
    with http_client() as c:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            r = c.post(url, json=body)
            dt_ms = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                errors += 1
                if errors == 1:
                    print(f"  {url}: HTTP {r.status_code} {r.text[:200]}", flush=True)
            if i >= warmup:
                times.append(dt_ms)
    times.sort()
    return {"n": n, "errors": errors, "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 2),
            "mean_ms": round(statistics.fmean(times), 2)}


def throughput_wrk(url: str, body: dict, conns: int, seconds: int, tmp: Path) -> dict:
    lua = tmp / f"post-{secrets.token_hex(3)}.lua"
    payload = json.dumps(body).replace("\\", "\\\\").replace('"', '\\"')
    lua.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                   f'wrk.body = "{payload}"\n')
    proc = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", str(lua), url],
                          capture_output=True, text=True, timeout=seconds + 60)
    out = proc.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    lat = re.search(r"Latency\s+([\d.]+)(us|ms|s)\s+[\d.]+\w+\s+([\d.]+)(us|ms|s)", out)
    out_d = {"tool": "wrk", "rps": float(rps[1]) if rps else 0.0, "requests": int(total[1]) if total else 0,
             "non2xx": int(non2xx[1]) if non2xx else 0, "socket_errors": sock[1] if sock else ""}
    out_d["ok_rps"] = round(out_d["rps"] * (1 - out_d["non2xx"] / max(out_d["requests"], 1)), 1)
    if lat:
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
        out_d["mean_ms"] = round(float(lat[1]) * scale[lat[2]], 2)
        out_d["max_ms"] = round(float(lat[3]) * scale[lat[4]], 2)
    if out_d["non2xx"] or out_d["socket_errors"]:
        # wrk does not say which status: a short python burst with the same concurrency does
        probe = throughput_py(url, body, conns, 3)
        out_d["codes_probe"] = probe["codes"]
        out_d["error_sample"] = probe["error_sample"]
    return out_d


def throughput_py(url: str, body: dict, conns: int, seconds: int) -> dict:
    counts = [0] * conns
    errors = [0] * conns
    codes: dict[str, int] = {}
    sample: list[str] = []
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        with http_client() as c:
            while time.monotonic() < stop:
                try:
                    r = c.post(url, json=body)
                    counts[i] += 1
                    key = str(r.status_code)
                    if r.status_code != 200:
                        errors[i] += 1
                        if not sample:
                            sample.append(f"HTTP {r.status_code}: {r.text[:200]}")
                except Exception as exc:  # noqa: BLE001
                    key = type(exc).__name__
                    errors[i] += 1
                    if not sample:
                        sample.append(f"{key}: {str(exc)[:200]}")
                codes[key] = codes.get(key, 0) + 1
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    return {"tool": "python-httpx", "rps": round(sum(counts) / elapsed, 1),
            "ok_rps": round((sum(counts) - sum(errors)) / elapsed, 1),
            "requests": sum(counts), "non2xx": sum(errors), "socket_errors": "", "codes": codes,
            "error_sample": sample[0] if sample else ""}


def free_port() -> int:
    from home_mlops.deploy.ports import free_port as loopback_port

    return loopback_port()


IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def _stand_in_model_server():
    """A loopback HTTP server answering POST /predict {"inputs": [...]} with one 0 per row."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_POST(self):
            rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"]
            data = json.dumps([0] * len(rows)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((LOOP, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc; the clock ticks of its stat line)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def checks_ab(rev: str, requests: int, warmup: int) -> dict:
    """p50 of the gateway at ``rev`` and in the working tree, for a 1-row and a 10 000-row body."""
    sys.path.insert(0, str(ROOT / "pyhelpers"))
    from home_mlops.build.gateway_context import PACKAGE_FILES
    from home_mlops.gateway.spec import Column, GatewaySpec

    upstream = _stand_in_model_server()
    procs: dict[str, subprocess.Popen] = {}
    urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp_s:
        tmp = Path(tmp_s)
        spec = tmp / "gateway-spec.json"
        GatewaySpec(app="bench-checks", inputs=[Column(name=c, type="double") for c in IRIS]).save(spec)
        try:
            for variant in (rev, "working tree"):
                pkg = tmp / ("old" if variant == rev else "new") / "gateway"
                pkg.mkdir(parents=True)
                for name in PACKAGE_FILES:  # what the gateway image carries (a file new since REV is skipped there)
                    src = ROOT / "pyhelpers" / "home_mlops" / "gateway" / name
                    if variant == rev:
                        shown = subprocess.run(["git", "show", f"{rev}:pyhelpers/home_mlops/gateway/{name}"],
                                               cwd=ROOT, capture_output=True, text=True)
                        if shown.returncode == 0:
                            (pkg / name).write_text(shown.stdout)
                    else:
                        shutil.copyfile(src, pkg / name)
                port = free_port()
                env = {k: v for k, v in os.environ.items() if not k.startswith("HOME_MLOPS_")}
                env.update({"PYTHONPATH": str(pkg.parent), "HOME_MLOPS_GATEWAY_HOST": LOOP,
                            "HOME_MLOPS_GATEWAY_PORT": str(port), "HOME_MLOPS_GATEWAY_SPEC": str(spec),
                            "HOME_MLOPS_UPSTREAM_URL": f"http://{LOOP}:{upstream.server_address[1]}",
                            "HOME_MLOPS_GATEWAY_LOG_LEVEL": "warning"})
                procs[variant] = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=pkg.parent, env=env)
                urls[variant] = f"http://{LOOP}:{port}"
                wait_ready(urls[variant] + "/healthz", 30)
            record = dict(zip(IRIS, [5.1, 3.5, 1.4, 0.2]))
            bodies = {"1 row": record, "10000 rows": {"dataframe_records": [record] * 10_000}}
            res: dict = {"rev": rev, "requests": requests}
            for label, body in bodies.items():
                n = requests if label == "1 row" else max(10, requests // 10)
                times: dict[str, list[float]] = {v: [] for v in urls}
                cpu: dict[str, list[float]] = {v: [] for v in urls}
                for _ in range(5):  # alternating blocks: background load hits both alike
                    for variant, url in urls.items():
                        before = _cpu_seconds(procs[variant].pid)
                        block = n // 5
                        times[variant].append(latency(url + "/predict", body, max(1, warmup // 5), block)["p50_ms"])
                        cpu[variant].append((_cpu_seconds(procs[variant].pid) - before) * 1000
                                            / (block + max(1, warmup // 5)))
                res[label] = {v: round(statistics.median(t), 3) for v, t in times.items()}  # median of block p50s
                res[label]["ratio"] = round(res[label]["working tree"] / res[label][rev], 3)
                # the gateway process's own CPU per request: what the hop costs, unlike wall time
                # barely moved by other processes on a busy machine
                res[label]["cpu_ms_per_request"] = {v: round(statistics.median(c), 3) for v, c in cpu.items()}
                res[label]["cpu_ratio"] = round(res[label]["cpu_ms_per_request"]["working tree"]
                                                / res[label]["cpu_ms_per_request"][rev], 3)
            return res
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(10)
            upstream.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--overload-connections", type=int, default=64,
                        help="a second throughput run at this many connections (issue 16: holds >= 0.9x)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep-images", action="store_true")
    parser.add_argument("--checks", metavar="REV", help="only compare the payload checks' cost with git revision REV")
    args = parser.parse_args()
    args.requests = max(10, min(args.requests, 5000))
    args.seconds = max(1, min(args.seconds, 60))
    if args.checks:
        if not re.fullmatch(r"[0-9a-fA-F]{7,40}|HEAD(~[0-9]+)?", args.checks):
            raise SystemExit(f"--checks {args.checks!r}: expected a commit id (7-40 hex digits) or HEAD~N")
        res = checks_ab(args.checks, args.requests, args.warmup)
        print(json.dumps(res, indent=2))
        if args.json:
            args.json.write_text(json.dumps(res, indent=2) + "\n")
        return 0

    from home_mlops.deploy import switch as dp
    from home_mlops.deploy.app_settings import DeploySettings
    from home_mlops.platform.host import docker_client

    client = docker_client()
    token = secrets.token_hex(3)
    app = f"bench-gw-{token}"  # unique: undeploy(app) cannot touch anyone else's containers
    registry = f"127.0.0.1:5000/bench-{token}"
    use_wrk = shutil.which("wrk") is not None
    res: dict = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "app": app,
                 "load_tool": "wrk" if use_wrk else "python-httpx", "requests": args.requests,
                 "warmup": args.warmup, "seconds": args.seconds, "connections": args.connections,
                 "overload_connections": args.overload_connections}
    images: list[str] = []
    mlflow_proc = None
    deployed = False
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp_s:
        tmp = Path(tmp_s)
        state = tmp / "state"
        state.mkdir()
        env = cli_env(state)
        try:
            print("training ...", flush=True)
            run = train(APP, state)
            resolved, _ = cli(["resolve", "--experiment-id", run["experiment_id"], "--run-id", run["run_id"]],
                              env, tmp / "resolve.json")
            record = (resolved.get("input_example") or [None])[0]
            if not record:
                raise SystemExit("the model has no input example to send")
            res["record"] = record
            print("building the pair ...", flush=True)
            b, _ = cli(["bento-build", "--no-push", *run_args(run, app, registry)], env, tmp / "b.json")
            images.append(b["image"])
            g, _ = cli(["fastapi-build", "--no-push", *run_args(run, app, registry)], env, tmp / "g.json")
            images.append(g["image"])

            port = free_port()
            deployed = True
            release = dp.Release(app, run["experiment_id"], run["run_id"], run.get("model_id") or "", b["image"],
                                 g["image"], {"dataframe_records": [record]})
            d = dp.deploy(release, DeploySettings(port=port, bind=LOOP, ready_timeout=240), state_base=tmp / "deploy")
            res["ports"] = {"gateway": port, "bento": d.bento_port}
            print(f"deployed: gateway :{port}, bento :{d.bento_port}", flush=True)

            mport = free_port()
            menv = {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env['PATH']}"}
            mlflow_log = open(tmp / "mlflow-serve.log", "wb")
            mlflow_proc = subprocess.Popen(
                [str(VENV_BIN / "mlflow"), "models", "serve", "-m", resolved["local_path"], "--env-manager", "local",
                 "-h", LOOP, "-p", str(mport), "-w", "1"],
                env=menv, stdout=mlflow_log, stderr=subprocess.STDOUT, start_new_session=True)
            targets = {
                "bento direct": (f"http://{LOOP}:{d.bento_port}/predict", {"inputs": [record]}, None),
                "gateway": (f"http://{LOOP}:{port}/predict", {"dataframe_records": [record]}, None),
                "mlflow serve": (f"http://{LOOP}:{mport}/invocations", {"dataframe_records": [record]},
                                 f"http://{LOOP}:{mport}/ping"),
            }
            try:
                wait_ready(f"http://{LOOP}:{mport}/ping", 120)
            except SystemExit as exc:
                tail = (tmp / "mlflow-serve.log").read_text(errors="replace")[-800:]
                print(f"  mlflow serve: {exc}\n{tail}", flush=True)
                res["mlflow_skipped"] = f"skipped: mlflow models serve did not come up ({tail[-200:]!r})"
                targets.pop("mlflow serve")

            res["results"] = {}
            # All latencies first: after a burst of load, BentoML's adaptive batching keeps
            # waiting for batch-mates (seen: ~28 ms per sequential request, direct or through
            # the gateway), so a latency measured after a throughput run of another target
            # would charge that wait to whichever target came second.
            lats = {name: latency(url, body, args.warmup, args.requests) for name, (url, body, _) in targets.items()}
            for name, (url, body, _) in targets.items():
                lat = lats[name]
                tp = (throughput_wrk(url, body, args.connections, args.seconds, tmp) if use_wrk
                      else throughput_py(url, body, args.connections, args.seconds))
                res["results"][name] = {"latency": lat, "throughput": tp}
                if name in ("bento direct", "gateway") and args.overload_connections > args.connections:
                    over = (throughput_wrk(url, body, args.overload_connections, args.seconds, tmp) if use_wrk
                            else throughput_py(url, body, args.overload_connections, args.seconds))
                    res["results"][name]["overload"] = over
                    print(f"{name:13s} {over['rps']} req/s with {args.overload_connections} conns "
                          f"({over['non2xx']} non-2xx of {over['requests']}, mean {over.get('mean_ms')} ms, "
                          f"max {over.get('max_ms')} ms, socket errors: {over.get('socket_errors') or 'none'})",
                          flush=True)
                print(f"{name:13s} p50 {lat['p50_ms']} ms p99 {lat['p99_ms']} ms ({lat['errors']} errors); "
                      f"{tp['rps']} req/s with {args.connections} conns ({tp['non2xx']} non-2xx of {tp['requests']}"
                      f"{', e.g. ' + tp['error_sample'][:150] if tp.get('error_sample') else ''})", flush=True)
        finally:
            if mlflow_proc is not None:
                try:
                    os.killpg(mlflow_proc.pid, 15)
                    mlflow_proc.wait(timeout=20)
                except Exception:  # noqa: BLE001
                    mlflow_proc.kill()
            if deployed:
                removed = dp.undeploy(app, state_base=tmp / "deploy")
                print(f"undeployed: {', '.join(removed) or 'nothing'}", flush=True)
            if not args.keep_images:
                for ref in images:
                    remove_image(client, ref)

    print()
    print(render_table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


def render_table(res: dict) -> str:
    r = res["results"]
    direct, gw = r["bento direct"], r["gateway"]
    out = [f"Serving benchmark, {res['date']} (`.venv/bin/python bench/bench_gateway.py`; "
           f"latency: 1 connection, {res['warmup']} warm-up + {res['requests']} sequential 1-row requests; "
           f"throughput: {res['connections']} connections for {res['seconds']} s with {res['load_tool']})", "",
           "| target | p50 ms | p99 ms | req/s (16 conns) | successful req/s | errors (lat / load) |", "|---|---|---|---|---|---|"]
    for name, v in r.items():
        lat, tp = v["latency"], v["throughput"]
        err = f"{lat['errors']} / {tp['non2xx']} of {tp['requests']}"
        if tp.get("socket_errors"):
            err += f" (socket: {tp['socket_errors']})"
        if tp.get("error_sample"):
            err += f"; e.g. {tp['error_sample'][:120]!r}"
        out.append(f"| {name} | {lat['p50_ms']} | {lat['p99_ms']} | {tp['rps']:.0f} | {tp['ok_rps']:.0f} | {err} |")
    if "mlflow serve" not in r:
        out.append(f"| mlflow serve | - | - | - | - | {res.get('mlflow_skipped', 'skipped')} |")
    out += ["", "| ratio | value | goal |", "|---|---|---|"]
    added = gw["latency"]["p50_ms"] - direct["latency"]["p50_ms"]
    out.append(f"| gateway p50 - direct p50 | {added:.2f} ms | <= 0.5 ms: {'met' if added <= 0.5 else 'NOT met'} |")
    tr = gw["throughput"]["ok_rps"] / max(direct["throughput"]["ok_rps"], 1e-9)
    def failing(t: dict) -> bool:
        return t["non2xx"] > 0.05 * max(t["requests"], 1) or bool(t.get("socket_errors"))

    if failing(direct["throughput"]) or failing(gw["throughput"]):
        verdict = "not meaningful: more than 5% of the load requests failed (see errors above)"
    else:
        verdict = "met" if tr >= 0.9 else "NOT met"
    out.append(f"| gateway successful req/s / direct successful req/s | {tr:.3f} | >= 0.9: {verdict} |")
    for name in ("gateway", "bento direct"):
        over = r[name].get("overload")
        if over:
            held = over["ok_rps"] / max(r[name]["throughput"]["ok_rps"], 1e-9)  # 503s are not throughput
            quick = not over.get("socket_errors")
            out.append(f"| {name}: successful req/s at {res['overload_connections']} conns / at {res['connections']} | "
                       f"{held:.3f} (mean {over.get('mean_ms')} ms, max {over.get('max_ms')} ms, "
                       f"{over['non2xx']} non-2xx, socket errors: {over.get('socket_errors') or 'none'}) | "
                       f">= 0.9 and no time-out: {'met' if held >= 0.9 and quick else 'NOT met'} |")
    if "mlflow serve" in r:
        m = r["mlflow serve"]
        out.append(f"| mlflow-serve p50 / bento direct p50 | "
                   f"{m['latency']['p50_ms'] / direct['latency']['p50_ms']:.3f} | (peer comparison) |")
        out.append(f"| mlflow-serve successful req/s / bento direct successful req/s | "
                   f"{m['throughput']['ok_rps'] / max(direct['throughput']['ok_rps'], 1e-9):.3f} | (peer comparison) |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
