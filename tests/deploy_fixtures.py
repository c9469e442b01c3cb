"""Tiny stand-in images for the deploy tests and the switch-over benchmark.

Both are built FROM the local base image (home-mlops/python-base:3.11) with the
legacy builder and COPY one stdlib-only .py file, so a build takes seconds.
They follow the runtime contract of the real images:

* bento: listens on BENTOML_HOST (default 127.0.0.1) / BENTOML_PORT,
  ``POST /predict`` ``{"inputs": [records]}`` -> JSON list, ``GET /readyz``,
  ``GET /livez``. Each prediction is ``{"run_id": $HOME_MLOPS_RUN_ID, "i": n}``
  so a test can tell which run answered. ``STANDIN_MODE``: ``ok`` (default),
  ``fail500`` (/predict answers 500), ``never-ready`` (/readyz answers 503),
  ``crash`` (exits at once). ``STANDIN_READY_DELAY`` seconds before ready.
* gateway: HOME_MLOPS_UPSTREAM_URL, HOME_MLOPS_GATEWAY_HOST/PORT, every answer
  carries ``X-Home-Mlops-Deploy-Id: $HOME_MLOPS_DEPLOY_ID`` (when set), a
  SO_REUSEPORT listener; on SIGTERM it closes the listener, answers in-flight
  requests (with ``Connection: close``), closes idle keep-alive connections
  and exits. ``GET /healthz``, ``GET /readyz`` (200 iff upstream ready),
  ``POST /predict`` ``{"dataframe_records": [...]}`` -> ``{"predictions": [...]}``.
"""
from __future__ import annotations

import io
import tarfile
import textwrap

BASE_IMAGE = "home-mlops/python-base:3.11"
STANDIN_BENTO = "home-mlops-test/standin-bento"
STANDIN_GATEWAY = "home-mlops-test/standin-gateway"

BENTO_PY = r'''
import json, os, sys, time, signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = os.environ.get("STANDIN_MODE", "ok")
RUN_ID = os.environ.get("HOME_MLOPS_RUN_ID", "unknown")
READY_AT = time.monotonic() + float(os.environ.get("STANDIN_READY_DELAY", "0"))
if MODE == "crash":
    print("stand-in bento: crashing on purpose (STANDIN_MODE=crash)", flush=True)
    sys.exit(3)


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/livez":
            return self.send(200, {"status": "ok"})
        if self.path == "/readyz":
            ready = MODE != "never-ready" and time.monotonic() >= READY_AT
            return self.send(200 if ready else 503, {"ready": ready})
        self.send(404, {"detail": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.path != "/predict":
            return self.send(404, {"detail": "not found"})
        if MODE == "fail500":
            print("stand-in bento: /predict failing on purpose (STANDIN_MODE=fail500)", flush=True)
            return self.send(500, {"detail": "model exploded (stand-in)"})
        rows = json.loads(raw)["inputs"]
        self.send(200, [{"run_id": RUN_ID, "i": i} for i, _ in enumerate(rows)])


class S(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
host = os.environ.get("BENTOML_HOST", "127.0.0.1")
port = int(os.environ.get("BENTOML_PORT", "3000"))
print(f"stand-in bento for run {RUN_ID} on {host}:{port} mode={MODE}", flush=True)
S((host, port), H).serve_forever()
'''

GATEWAY_PY = r'''
import json, os, signal, socket, sys, threading, time, urllib.request, urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UP = os.environ.get("HOME_MLOPS_UPSTREAM_URL", "http://127.0.0.1:3000").rstrip("/")
HOST = os.environ.get("HOME_MLOPS_GATEWAY_HOST", "127.0.0.1")
PORT = int(os.environ.get("HOME_MLOPS_GATEWAY_PORT", "8000"))
GRACE = float(os.environ.get("HOME_MLOPS_GATEWAY_GRACEFUL_TIMEOUT", "8"))
DEPLOY_ID = os.environ.get("HOME_MLOPS_DEPLOY_ID", "")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
draining = threading.Event()
lock = threading.Lock()
busy = {}  # connection -> None (accepted, no request yet) / True (handling one) / False (idle keep-alive)


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        with lock:
            busy.setdefault(self.connection, None)  # its first request is on its way: drain waits for it

    def finish(self):
        with lock:
            busy.pop(self.connection, None)
        super().finish()

    def handle_one_request(self):
        # mark busy as soon as a request line arrives; idle connections can be closed on drain
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True
            return
        with lock:
            busy[self.connection] = True
        try:
            if not self.parse_request():
                return
            getattr(self, "do_" + self.command)()
            self.wfile.flush()
        finally:
            with lock:
                busy[self.connection] = False

    def send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if DEPLOY_ID:
            self.send_header("X-Home-Mlops-Deploy-Id", DEPLOY_ID)
        if draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def upstream(self, method, path, body=None):
        req = urllib.request.Request(UP + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return 599, str(e).encode()

    def do_GET(self):
        if self.path == "/healthz":
            return self.send(200, {"status": "ok"})
        if self.path == "/readyz":
            code, _ = self.upstream("GET", "/readyz")
            return self.send(200 if code == 200 else 503, {"status": "ready" if code == 200 else "not ready"})
        self.send(404, {"detail": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.path != "/predict":
            return self.send(404, {"detail": "not found"})
        try:
            rows = json.loads(raw)["dataframe_records"]
        except Exception:
            return self.send(422, {"detail": "expected {\"dataframe_records\": [...]}"})
        code, body = self.upstream("POST", "/predict", json.dumps({"inputs": rows}).encode())
        if code != 200:
            return self.send(502, {"detail": f"model server answered {code}"})
        self.send(200, {"predictions": json.loads(body)})


class S(ThreadingHTTPServer):
    daemon_threads = True

    def process_request(self, request, client_address):
        with lock:  # counted from the accept on, before its thread runs: drain must wait for it
            busy[request] = None
        super().process_request(request, client_address)

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()

    def server_activate(self):
        self.socket.listen(1024)


server = S((HOST, PORT), H)


def drain(*_):
    draining.set()
    threading.Thread(target=_drain, daemon=True).start()


def _drain():
    server.shutdown()          # stop the accept loop
    server.socket.close()      # queued connections migrate to the twin (tcp_migrate_req)
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:
        with lock:
            idle = [c for c, b in busy.items() if b is False]
            left = len(busy)
        for c in idle:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if not left:
            break
        time.sleep(0.05)
    print("stand-in gateway: drained, exiting", flush=True)
    os._exit(0)


signal.signal(signal.SIGTERM, drain)
print(f"stand-in gateway on {HOST}:{PORT} -> {UP}", flush=True)
server.serve_forever(poll_interval=0.1)
threading.Event().wait()  # the drain thread ends the process
'''


B_PORTS = range(18200, 18300)  # helper B's test and bench ports (tests never use another range)


def worker_share(ports: range) -> list[int]:
    """This pytest-xdist worker's ports of ``ports`` (every n-th, n = the number of workers).

    Several modules draw from B_PORTS, and two of them may run at once on two workers: a port
    one picked but has not yet claimed with a container could otherwise be picked twice."""
    import os

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    return [p for i, p in enumerate(ports) if i % count == index]


def free_test_port(ports: range = B_PORTS, exclude: frozenset[int] = frozenset()) -> int:
    """A port of ``ports`` that nothing listens on (any address) and no home-mlops container claims."""
    import random
    import socket

    import docker

    claimed = {(c.get("Labels") or {}).get("io.homemlops.port")
               for c in docker.from_env().api.containers(all=True, filters={"label": "io.homemlops.port"})}
    choices = [p for p in worker_share(ports) if str(p) not in claimed and p not in exclude]
    random.shuffle(choices)
    for port in choices:
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _context_tar(files: dict[str, str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def build_image(client, tag: str, script_name: str, script: str, env: dict[str, str] | None = None,
                labels: dict[str, str] | None = None) -> str:
    """Build ``tag`` FROM the base image with one script; returns the image id."""
    lines = [f"FROM {BASE_IMAGE}", f"COPY {script_name} /app/{script_name}"]
    for key, value in (env or {}).items():
        lines.append(f"ENV {key}={value}")
    for key, value in (labels or {}).items():
        lines.append(f'LABEL "{key}"="{value}"')
    lines.append(f'CMD ["python3", "-u", "/app/{script_name}"]')
    ctx = _context_tar({"Dockerfile": "\n".join(lines) + "\n", script_name: textwrap.dedent(script)})
    image_id = None
    errors = []
    for chunk in client.api.build(fileobj=ctx, custom_context=True, tag=tag, network_mode="host",
                                  rm=True, decode=True):
        if "error" in chunk:
            errors.append(chunk["error"])
        aux = chunk.get("aux") or {}
        if "ID" in aux:
            image_id = aux["ID"]
    if errors or not image_id:
        raise RuntimeError(f"building {tag} failed: {' '.join(errors) or 'no image id'}")
    return image_id


def build_standin_bento(client, tag: str, mode: str = "ok", ready_delay: float = 0.0) -> str:
    env = {"STANDIN_MODE": mode, "STANDIN_READY_DELAY": str(ready_delay)}
    build_image(client, tag, "bento.py", BENTO_PY, env=env)
    return tag


def build_standin_gateway(client, tag: str) -> str:
    build_image(client, tag, "gateway.py", GATEWAY_PY)
    return tag


def build_standins(client) -> dict[str, str]:
    """Every stand-in image the deploy tests use, by role name."""
    return {
        "bento": build_standin_bento(client, f"{STANDIN_BENTO}:ok"),
        "bento_slow": build_standin_bento(client, f"{STANDIN_BENTO}:slow", ready_delay=3),
        "bento_fail500": build_standin_bento(client, f"{STANDIN_BENTO}:fail500", mode="fail500"),
        "bento_crash": build_standin_bento(client, f"{STANDIN_BENTO}:crash", mode="crash"),
        "bento_never_ready": build_standin_bento(client, f"{STANDIN_BENTO}:never-ready", mode="never-ready"),
        "gateway": build_standin_gateway(client, f"{STANDIN_GATEWAY}:1"),
    }


# --------------------------------------------------------------------------- load loop (tests and bench)

import http.client
import threading
import time as _time


class LoadLoop:
    """Loopback clients hammering ``POST /predict`` on 127.0.0.1:``port`` until stopped.

    ``fresh`` threads open a new connection per request; ``keepalive`` threads reuse
    one connection and, like urllib3 or a browser, resend a request once on a new
    connection when a *reused* idle connection turns out to be closed before any
    response byte arrived (counted in ``stale_retries``). Everything else is a failure.
    """

    PAYLOAD = b'{"dataframe_records": [{"x": 1.0}]}'

    def __init__(self, port: int, fresh: int = 2, keepalive: int = 1, max_seconds: float = 90,
                 max_requests: int = 200_000):
        self.port = port
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.ok: list[tuple[float, str]] = []  # (monotonic time, run id that answered)
        self.failures: list[tuple[float, str]] = []
        self.stale_retries = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._fresh, daemon=True) for _ in range(fresh)]
        self._threads += [threading.Thread(target=self._keepalive, daemon=True) for _ in range(keepalive)]

    # ---- one request
    def _send(self, conn) -> tuple[int, bytes]:
        conn.request("POST", "/predict", body=self.PAYLOAD, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
        return resp.status, body

    def _record(self, status: int | None, body: bytes | str) -> None:
        now = _time.monotonic()
        with self.lock:
            if status == 200:
                try:
                    import json

                    run = json.loads(body)["predictions"][0]["run_id"]
                except Exception as exc:  # noqa: BLE001
                    self.failures.append((now, f"bad body {body[:100]!r}: {exc}"))
                    return
                self.ok.append((now, run))
            else:
                self.failures.append((now, f"HTTP {status}: {str(body)[:200]}"))

    def _done(self, started: float) -> bool:
        return (self._stop.is_set() or _time.monotonic() - started > self.max_seconds
                or len(self.ok) + len(self.failures) >= self.max_requests)

    def _fresh(self) -> None:
        started = _time.monotonic()
        while not self._done(started):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            try:
                status, body = self._send(conn)
                self._record(status, body)
            except Exception as exc:  # noqa: BLE001
                self._record(None, f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()

    def _keepalive(self) -> None:
        started = _time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        while not self._done(started):
            reused = conn.sock is not None
            try:
                status, body = self._send(conn)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if not reused:
                    self._record(None, f"{type(exc).__name__}: {exc}")
                    continue
                with self.lock:
                    self.stale_retries += 1
                try:
                    status, body = self._send(conn)
                except Exception as exc2:  # noqa: BLE001
                    conn.close()
                    self._record(None, f"{type(exc2).__name__} after a stale keep-alive retry: {exc2}")
                    continue
            except Exception as exc:  # noqa: BLE001
                conn.close()
                self._record(None, f"{type(exc).__name__}: {exc}")
                continue
            self._record(status, body)
        conn.close()

    # ---- control
    def start(self) -> "LoadLoop":
        for t in self._threads:
            t.start()
        return self

    def wait_for(self, count: int, timeout: float = 15) -> None:
        deadline = _time.monotonic() + timeout
        while len(self.ok) + len(self.failures) < count and _time.monotonic() < deadline:
            _time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def max_gap(self, since: float = 0.0) -> float:
        """Longest time without a successful answer, after ``since`` (monotonic)."""
        times = sorted(t for t, _ in self.ok if t >= since)
        return max((b - a for a, b in zip(times, times[1:])), default=0.0)
