"""The gateway app against a real model-server stand-in, over real loopback sockets.

The stand-in (http.server in a thread) implements the BentoML service's
contract: ``POST /predict {"inputs": [record, ...]}`` answers the sum of each
record's numbers, so forwarding can be checked exactly; ``GET /readyz``.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from home_mlops.gateway.app import InputError, Settings, create_app, extract_rows
from home_mlops.gateway.rawbody import nests_deeper_than
from home_mlops.gateway.spec import Column, GatewaySpec

COLS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]
RECORDS = [dict(zip(COLS, r)) for r in ROWS]
SUMS = [sum(r) for r in ROWS]
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "pyhelpers" / "home_mlops" / "gateway"


def iris_spec() -> GatewaySpec:
    return GatewaySpec(
        app="tabular-iris", experiment_id="1", run_id="0123456789abcdef0123456789abcdef", model_id="m-abc",
        model_uri="models:/m-abc", inputs=[Column(name=c, type="double") for c in COLS],
        input_example=[dict(zip(COLS, [5.0, 3.3, 1.4, 0.2]))],
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the model-server stand-in


class Upstream:
    """A tiny real HTTP server standing in for the BentoML service."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.ready_status = 200
        self.received: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else 40 ms delayed-ACK stalls

            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/readyz":
                    self._send(outer.ready_status, {"ready": outer.ready_status == 200})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/predict":
                    self._send(404, {"error": "not found"})
                    return
                outer.received.append(body)
                if outer.delay:
                    time.sleep(outer.delay)
                records = body["inputs"]
                first = next(iter(records[0].values()), None) if records and isinstance(records[0], dict) else None
                if first == -1:
                    self._send(400, {"error": "the model refused -1\n" + "x" * 2000})
                    return
                if first == -3:  # a slow prediction (for the drain test)
                    time.sleep(1.5)
                if first == -2:
                    self._send(500, {"error": "Traceback (most recent call last): boom"})
                    return
                if first == -4:  # the model server's answer to a genuine model failure
                    self._send(500, {"error": "the model failed", "request_id": "0123abcd", "error_class": "ValueError"})
                    return
                self._send(200, [
                    sum(v for v in r.values() if isinstance(v, (int, float)) and not isinstance(v, bool))
                    for r in records
                ])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None  # a client (the gateway) that timed out and left
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Upstream":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def serve(app):
    """Run an ASGI app with a real uvicorn on a loopback port, in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def upstream():
    with Upstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream):
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME_MLOPS_MAX_BODY_BYTES", "65536")
    mp.setenv("HOME_MLOPS_MAX_ROWS", "100")
    mp.setenv("HOME_MLOPS_UPSTREAM_TIMEOUT", "5")
    app = create_app(iris_spec(), upstream.url)
    mp.undo()
    with serve(app) as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        yield client


def predict(client: httpx.Client, body) -> httpx.Response:
    return client.post("/predict", json=body)


# --------------------------------------------------------------------------- formats


FORMATS = {
    "dataframe_records": {"dataframe_records": RECORDS},
    "dataframe_split": {"dataframe_split": {"columns": COLS, "data": ROWS}},
    "dataframe_split_reordered": {"dataframe_split": {"columns": COLS[::-1], "data": [r[::-1] for r in ROWS]}},
    "dataframe_split_index": {"dataframe_split": {"index": [0, 1], "columns": COLS, "data": ROWS}},
    "instances_records": {"instances": RECORDS},
    "instances_rows": {"instances": ROWS},
    "inputs_records": {"inputs": RECORDS},
    "inputs_rows": {"inputs": ROWS},
    "inputs_columns": {"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLS)}},
    "bare_list": RECORDS,
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_gives_the_same_predictions(gateway, upstream, name):
    resp = predict(gateway, FORMATS[name])
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"predictions": SUMS}
    # what reached the model server: the service's contract, records keyed by column name
    assert upstream.received[-1] == {"inputs": RECORDS}
    assert list(upstream.received[-1]["inputs"][0]) == COLS


def test_single_flat_record(gateway, upstream):
    resp = predict(gateway, RECORDS[1])
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"predictions": [SUMS[1]]}
    assert upstream.received[-1] == {"inputs": [RECORDS[1]]}


def test_int_for_double_is_accepted_and_sent_as_float(gateway, upstream):
    record = {c: 1 for c in COLS}
    resp = predict(gateway, {"dataframe_records": [record]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"predictions": [4.0]}
    sent = upstream.received[-1]["inputs"][0]
    assert all(type(v) is float for v in sent.values())  # MLflow would refuse int64 for a double column


# --------------------------------------------------------------------------- refusals


def test_missing_field_names_field_and_row(gateway, upstream):
    before = len(upstream.received)
    second = dict(RECORDS[1])
    del second["petal width (cm)"]
    resp = predict(gateway, {"dataframe_records": [RECORDS[0], second]})
    assert resp.status_code == 422
    body = resp.json()
    assert body["errors"][0] == {"row": 1, "field": "petal width (cm)", "type": "missing", "message": "Field required"}
    assert "row 1" in body["detail"] and "petal width (cm)" in body["detail"]
    assert len(upstream.received) == before  # nothing was forwarded


@pytest.mark.parametrize("bad", ["5.1", True, None, [5.1], {"v": 1}])
def test_mistyped_field(gateway, bad):
    record = dict(RECORDS[0], **{"sepal width (cm)": bad})
    resp = predict(gateway, {"dataframe_records": [record]})
    assert resp.status_code == 422, resp.text
    err = resp.json()["errors"][0]
    assert (err["row"], err["field"]) == (0, "sepal width (cm)")


def test_extra_field(gateway):
    resp = predict(gateway, {"dataframe_records": [dict(RECORDS[0], color="red")]})
    assert resp.status_code == 422
    assert resp.json()["errors"] == [
        {"row": 0, "field": "color", "type": "extra_forbidden", "message": "Extra inputs are not permitted"}]


def test_wrong_row_width_and_unknown_shapes(gateway):
    resp = predict(gateway, {"inputs": [ROWS[0], ROWS[1][:3]]})
    assert resp.status_code == 422 and "row 1" in resp.json()["detail"]
    assert predict(gateway, {"something": 1}).status_code == 422
    assert predict(gateway, {"inputs": RECORDS, "extra": 1}).status_code == 422
    assert predict(gateway, 42).status_code == 422
    assert predict(gateway, {"dataframe_records": []}).status_code == 422


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"inputs": [1, 2', b"   ", b"[1]]"])
def test_malformed_json_is_400(gateway, raw):
    resp = gateway.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["detail"].startswith("malformed JSON")
    assert "Traceback" not in resp.text


def test_body_too_large_is_413(gateway):
    big = {"dataframe_records": [dict(RECORDS[0]) for _ in range(2000)]}  # ~150 KB > 64 KiB
    resp = predict(gateway, big)
    assert resp.status_code == 413
    assert "too large" in resp.json()["detail"]

    # without Content-Length (chunked): counted while reading
    data = json.dumps(big).encode()

    def chunks():
        for i in range(0, len(data), 8192):
            yield data[i:i + 8192]

    resp = gateway.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    # the gateway still answers afterwards
    assert predict(gateway, RECORDS[0]).status_code == 200


def test_too_many_rows_is_413(gateway):
    resp = predict(gateway, {"inputs": [ROWS[0]] * 101})
    assert resp.status_code == 413 and "too many rows" in resp.json()["detail"]
    assert predict(gateway, {"inputs": [ROWS[0]] * 100}).status_code == 200


def test_upstream_4xx_and_5xx(gateway):
    refused = predict(gateway, {"inputs": [[-1, 0, 0, 0]]})
    assert refused.status_code == 400
    body = refused.json()
    assert body["upstream_status"] == 400 and "the model refused -1" in body["detail"]
    assert len(body["detail"]) < 400  # short, not the upstream's whole answer

    failed = predict(gateway, {"inputs": [[-2, 0, 0, 0]]})
    assert failed.status_code == 502
    assert "HTTP 500" in failed.json()["detail"]


def test_settings_defaults(monkeypatch):
    for name in list(os.environ):
        if name.startswith("HOME_MLOPS_"):
            monkeypatch.delenv(name)
    s = Settings.from_env()
    assert (s.upstream_url, s.timeout, s.max_body_bytes, s.max_rows) == (
        "http://127.0.0.1:3000", 10.0, 1024 * 1024, 10_000)
    monkeypatch.setenv("HOME_MLOPS_UPSTREAM_URL", "http://bento:3000/")
    assert Settings.from_env().upstream_url == "http://bento:3000"
    monkeypatch.setenv("HOME_MLOPS_UPSTREAM_TIMEOUT", "soon")
    with pytest.raises(ValueError):
        Settings.from_env()


# --------------------------------------------------------------------------- upstream down / slow


def test_upstream_down_is_502_and_not_ready():
    app = create_app(iris_spec(), f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with serve(app) as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        resp = client.post("/predict", json=RECORDS[0])
        assert resp.status_code == 502
        assert "unreachable" in resp.json()["detail"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200  # the process itself is fine
        metrics = client.get("/metrics").text
        assert 'gateway_upstream_errors_total{kind="connect"} 1.0' in metrics


def test_readyz_follows_upstream(gateway, upstream):
    assert gateway.get("/readyz").status_code == 200
    upstream.ready_status = 503
    try:
        resp = gateway.get("/readyz")
        assert resp.status_code == 503 and "503" in resp.json()["detail"]
    finally:
        upstream.ready_status = 200


def test_upstream_slow_is_504(monkeypatch):
    monkeypatch.setenv("HOME_MLOPS_UPSTREAM_TIMEOUT", "0.5")
    with Upstream(delay=3) as slow:
        app = create_app(iris_spec(), slow.url)
        with serve(app) as url, httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
            start = time.monotonic()
            resp = client.post("/predict", json=RECORDS[0])
            elapsed = time.monotonic() - start
            assert resp.status_code == 504
            assert "0.5 s" in resp.json()["detail"]
            assert elapsed < 2.5
            assert 'gateway_upstream_errors_total{kind="timeout"} 1.0' in client.get("/metrics").text


# --------------------------------------------------------------------------- metrics, docs, info


def _predict_count(client: httpx.Client, status: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "gateway_requests":
            for sample in family.samples:
                if (sample.name == "gateway_requests_total" and sample.labels.get("endpoint") == "/predict"
                        and sample.labels.get("status") == status):
                    return sample.value
    return 0.0


def test_metrics_count_requests(gateway):
    ok_before, bad_before = _predict_count(gateway, "200"), _predict_count(gateway, "422")
    for _ in range(3):
        assert predict(gateway, RECORDS[0]).status_code == 200
    assert predict(gateway, {"dataframe_records": [{}]}).status_code == 422
    assert _predict_count(gateway, "200") == ok_before + 3
    assert _predict_count(gateway, "422") == bad_before + 1
    text = gateway.get("/metrics").text
    assert 'gateway_request_duration_seconds_bucket{endpoint="/predict"' in text
    assert 'gateway_model_info{app="tabular-iris",model_id="m-abc",run_id="0123456789abcdef0123456789abcdef"} 1.0' in text
    gateway.get("/no/such/path")
    assert 'endpoint="other"' in gateway.get("/metrics").text  # unknown paths don't make new series


def test_openapi_lists_fields_and_example(gateway):
    doc = gateway.get("/openapi.json").json()
    op = doc["paths"]["/predict"]["post"]
    content = op["requestBody"]["content"]["application/json"]
    records_schema = next(s for s in content["schema"]["anyOf"] if s.get("title") == "dataframe_records")
    record = records_schema["properties"]["dataframe_records"]["items"]
    assert list(record["properties"]) == COLS
    assert record["required"] == COLS
    assert record["additionalProperties"] is False
    assert all(p["type"] == "number" for p in record["properties"].values())
    assert content["examples"]["dataframe_records"]["value"] == {"dataframe_records": iris_spec().input_example}
    assert record["examples"] == iris_spec().input_example
    assert {"200", "400", "413", "422", "502", "504"} <= set(op["responses"])
    assert gateway.get("/docs").status_code == 200


def test_root_and_healthz(gateway):
    assert gateway.get("/").json() == {
        "app": "tabular-iris", "experiment_id": "1", "run_id": "0123456789abcdef0123456789abcdef",
        "model_id": "m-abc", "model_uri": "models:/m-abc"}
    assert gateway.get("/healthz").json() == {"status": "ok"}


# --------------------------------------------------------------------------- other column types


def test_mixed_types_are_strict(upstream):
    spec = GatewaySpec(app="mixed", inputs=[
        Column(name="age", type="long"), Column(name="city", type="string"),
        Column(name="member", type="boolean", required=False), Column(name="seen at", type="datetime"),
    ])
    with serve(create_app(spec, upstream.url)) as url, httpx.Client(base_url=url, trust_env=False) as client:
        good = {"age": 3, "city": "Paris", "seen at": "2024-01-02T03:04:05"}
        resp = client.post("/predict", json={"dataframe_records": [good]})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"predictions": [3]}
        assert upstream.received[-1] == {"inputs": [dict(good, member=None)]}
        for field, bad in [("age", 3.0), ("age", "3"), ("city", 5), ("member", 1), ("seen at", "yesterday")]:
            resp = client.post("/predict", json={"dataframe_records": [dict(good, **{field: bad})]})
            assert resp.status_code == 422, (field, bad)
            assert resp.json()["errors"][0]["field"] == field


# --------------------------------------------------------------------------- python -m gateway, SO_REUSEPORT


def _start_gateway(workdir: Path, port: int, upstream_url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOME_MLOPS_")}
    env.update({
        "PYTHONPATH": str(workdir),
        "HOME_MLOPS_GATEWAY_HOST": "127.0.0.1",
        "HOME_MLOPS_GATEWAY_PORT": str(port),
        "HOME_MLOPS_UPSTREAM_URL": upstream_url,
        "HOME_MLOPS_GATEWAY_EXTRA": "extra",
        "HOME_MLOPS_GATEWAY_GRACEFUL_TIMEOUT": "5",
    })
    return subprocess.Popen([sys.executable, "-m", "gateway"], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _pids_seen(url: str, n: int) -> set[int]:
    pids = set()
    for _ in range(n):  # a new connection each time: the kernel spreads them over the listeners
        with httpx.Client(trust_env=False, timeout=5) as c:
            resp = c.get(url + "/whoami")
            assert resp.status_code == 200
            pids.add(resp.json()["pid"])
    return pids


def _wait_healthy(url: str, proc: subprocess.Popen, pid: int | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gateway exited {proc.returncode}: {proc.stdout.read()}")
        if pid is None:
            try:
                if httpx.get(url + "/healthz", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        elif pid in _pids_seen(url, 10):
            return
        time.sleep(0.1)
    pytest.fail("gateway did not become healthy")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The image's /app: the package copied as top-level `gateway`, the spec and an extra.py beside it."""
    tmp = tmp_path_factory.mktemp("app")
    shutil.copytree(PACKAGE_DIR, tmp / "gateway", ignore=shutil.ignore_patterns("__pycache__", "context.py"))
    iris_spec().save(tmp / "gateway-spec.json")
    (tmp / "extra.py").write_text(
        "import os\n\n"
        "def extend(app, spec):\n"
        "    @app.get('/whoami')\n"
        "    async def whoami():\n"
        "        return {'pid': os.getpid(), 'app': spec.app}\n"
    )
    return tmp


def test_listening_socket_gets_tcp_nodelay_on_accepted_connections():
    """asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without it every answer
    stalls ~40 ms on Nagle + delayed ACK. Checked on the accepted socket itself (no timing)."""
    from home_mlops.gateway.__main__ import bind_socket

    listener = bind_socket("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1

        async def accept_one() -> int:
            seen: list[int] = []

            async def handler(reader, writer):
                seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                writer.close()

            server = await asyncio.start_server(handler, sock=listener)
            reader, writer = await asyncio.open_connection(*listener.getsockname())
            await reader.read()  # closed by the handler
            writer.close()
            server.close()
            return seen[0]

        assert asyncio.run(accept_one()) != 0
    finally:
        listener.close()


def test_added_latency_is_measured(workdir, upstream):
    """p50 through `python -m gateway` vs straight to the model server, same keep-alive client.

    Printed for the report, not asserted: a timing bound flakes on a shared
    machine (the TCP_NODELAY regression it used to catch is checked above).
    """
    port = free_port()
    proc = _start_gateway(workdir, port, upstream.url)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc)
        body = {"inputs": [RECORDS[0]]}
        with httpx.Client(base_url=upstream.url, trust_env=False) as direct, \
                httpx.Client(base_url=url, trust_env=False) as via:
            def p50(call) -> float:
                for _ in range(30):
                    call()
                times = []
                for _ in range(300):
                    t = time.perf_counter()
                    assert call().status_code == 200
                    times.append(time.perf_counter() - t)
                return statistics.median(times)

            d = p50(lambda: direct.post("/predict", json=body))
            g = p50(lambda: via.post("/predict", json=RECORDS[0]))
        print(f"\np50 direct {d * 1000:.2f} ms, via gateway {g * 1000:.2f} ms, added {(g - d) * 1000:.2f} ms")
    finally:
        proc.terminate()
        proc.wait(10)


def test_two_gateways_share_the_port_and_the_old_one_drains(workdir, upstream):
    tmp_path = workdir
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    old = _start_gateway(tmp_path, port, upstream.url)
    new = None
    try:
        _wait_healthy(url, old)
        assert httpx.post(url + "/predict", json=RECORDS[0], trust_env=False).json() == {"predictions": [SUMS[0]]}
        new = _start_gateway(tmp_path, port, upstream.url)
        _wait_healthy(url, new, pid=new.pid)  # the second one bound the same port
        assert old.poll() is None and new.poll() is None
        assert _pids_seen(url, 60) == {old.pid, new.pid}

        # a slow request in flight on a connection held by the old process
        held = httpx.Client(base_url=url, trust_env=False, timeout=10)
        for _ in range(200):
            if held.get("/whoami").json()["pid"] == old.pid:
                break
            held.close()
            held = httpx.Client(base_url=url, trust_env=False, timeout=10)
        else:
            pytest.fail("no connection reached the old gateway")
        in_flight: dict = {}
        slow = threading.Thread(target=lambda: in_flight.update(
            resp=held.post("/predict", json={"inputs": [[-3, 0, 0, 0]]})))
        slow.start()
        time.sleep(0.4)

        # the old one stops on SIGTERM: it finishes the in-flight request, and new
        # requests keep being answered (by the new one)
        old.send_signal(signal.SIGTERM)
        failures = 0
        while old.poll() is None:
            try:
                with httpx.Client(trust_env=False, timeout=5) as c:
                    ok = c.post(url + "/predict", json=RECORDS[0]).status_code == 200
            except httpx.HTTPError:
                ok = False
            failures += not ok
            time.sleep(0.01)
        slow.join(10)
        held.close()
        assert in_flight["resp"].status_code == 200 and in_flight["resp"].json() == {"predictions": [-3]}
        # uvicorn re-raises SIGTERM after its graceful shutdown
        assert old.wait(10) in (0, -signal.SIGTERM)
        assert "Finished server process" in old.stdout.read()
        assert failures == 0
        assert _pids_seen(url, 10) == {new.pid}
    finally:
        for proc in (old, new):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)


# --------------------------------------------------------------------------- hostile bodies (issue 9 item 5)


def post_raw(client: httpx.Client, raw: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {"content-type": content_type} if content_type is not None else {}
    return client.post("/predict", content=raw, headers=headers)


@pytest.mark.parametrize("content_type", [
    None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/vnd.bentoml+pickle", "application/json; charset=latin-1", "application/jsonx",
])
def test_wrong_content_type_is_415(gateway, content_type):
    resp = post_raw(gateway, json.dumps(RECORDS[0]).encode(), content_type)
    assert resp.status_code == 415, resp.text
    assert "Content-Type" in resp.json()["detail"] or "charset" in resp.json()["detail"]


@pytest.mark.parametrize("content_type", ["application/json; charset=UTF-8", "Application/JSON", "application/problem+json"])
def test_json_content_types_are_accepted(gateway, content_type):
    assert post_raw(gateway, json.dumps(RECORDS[0]).encode(), content_type).status_code == 200


@pytest.mark.parametrize("raw", [
    "{\"inputs\": [\"\u00e9\"]}".encode("latin-1"),  # latin-1, not UTF-8
    b'{"inputs": "\xc0\xaf"}',  # an overlong encoding of '/'
    b'{"inputs": "\xed\xa0\x80"}',  # a UTF-16 surrogate encoded as UTF-8
    json.dumps(RECORDS[0]).encode("utf-16"),  # json.loads would guess UTF-16 and accept it
    b"\xef\xbb\xbf" + json.dumps(RECORDS[0]).encode(),  # a BOM is not JSON either
])
def test_invalid_utf8_is_400(gateway, raw):
    resp = post_raw(gateway, raw)
    assert resp.status_code == 400, resp.text
    assert "UTF-8" in resp.json()["detail"] or "malformed JSON" in resp.json()["detail"]
    assert predict(gateway, RECORDS[0]).status_code == 200


def test_nesting_check_on_the_raw_text():
    assert not nests_deeper_than(b'{"inputs": [[1, 2]]}', 3)
    assert nests_deeper_than(b'{"inputs": [[[1, 2]]]}', 3)
    assert not nests_deeper_than(b'["[[[[[[", {"a": "]]]]"}]', 2)  # brackets inside strings do not count
    assert nests_deeper_than(b'["\\"[[[", [[[1]]]]', 3)  # an escaped quote does not end the string
    assert nests_deeper_than(b'["\\\\", [[[1]]]]', 3)  # an escaped backslash does not escape the quote
    assert not nests_deeper_than(b'["a[[[", "b", "]]]c", "", {"k": "{{"}]', 2)  # quoted brackets among plain strings
    assert nests_deeper_than(b'["a[[[", "b", [["]]]c", [1]]]]', 3)
    assert not nests_deeper_than(b'["a[[[", "b", [["]]]c", [1]]]]', 4)
    assert not nests_deeper_than(b"[" * 32 + b"]" * 32, 32)
    assert nests_deeper_than(b"[" * 33 + b"]" * 33, 32)
    assert nests_deeper_than(b"[" * 1_000_000, 32)  # no recursion, no Python loop per byte
    assert not nests_deeper_than(b"[]" * 500_000, 32)


@pytest.mark.parametrize("raw", [
    b"[" * 60_000,
    b'{"inputs": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}",
    b'{"dataframe_records": [{"sepal length (cm)": ' + b'{"a": ' * 50 + b"1" + b"}" * 50 + b"}]}",
])
def test_deep_nesting_is_400_not_500(gateway, raw):
    resp = post_raw(gateway, raw)
    assert resp.status_code == 400, resp.text
    assert "nested more than 32 levels" in resp.json()["detail"]
    assert predict(gateway, RECORDS[0]).status_code == 200


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
@pytest.mark.parametrize("shape", ["record", "dataframe_records", "dataframe_split", "inputs_columns"])
def test_non_finite_numbers_are_422_naming_the_field(gateway, upstream, literal, shape):
    field = COLS[2]
    values = ["5.1", "3.5", literal, "0.2"]
    record = "{" + ", ".join(f"{json.dumps(c)}: {v}" for c, v in zip(COLS, values)) + "}"
    raw = {
        "record": record,
        "dataframe_records": f'{{"dataframe_records": [{record}]}}',
        "dataframe_split": f'{{"dataframe_split": {{"columns": {json.dumps(COLS)}, "data": [[{", ".join(values)}]]}}}}',
        "inputs_columns": "{\"inputs\": {" + ", ".join(f"{json.dumps(c)}: [{v}]" for c, v in zip(COLS, values)) + "}}",
    }[shape]
    sent = len(upstream.received)
    resp = post_raw(gateway, raw.encode())
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["field"] == field
    assert field in resp.json()["detail"]
    assert len(upstream.received) == sent  # nothing reached the model server


def test_integers_and_floats_outside_the_type_range_are_422(upstream):
    spec = GatewaySpec(app="ranges", inputs=[
        Column(name="l", type="long"), Column(name="i", type="integer"), Column(name="f", type="float"),
        Column(name="d", type="double"),
    ])
    good = {"l": 2**63 - 1, "i": -(2**31), "f": 3.4e38, "d": 1e308}
    with serve(create_app(spec, upstream.url)) as url, httpx.Client(base_url=url, trust_env=False) as client:
        assert client.post("/predict", json=good).status_code == 200
        for field, bad in [("l", 2**63), ("l", -(2**63) - 1), ("l", 10**40), ("i", 2**31), ("f", 3.5e38),
                           ("f", -1e39), ("d", 10**400)]:
            resp = client.post("/predict", content=json.dumps(dict(good, **{field: bad})).encode(),
                               headers={"content-type": "application/json"})
            assert resp.status_code == 422, (field, bad, resp.text)
            assert resp.json()["errors"][0]["field"] == field


def test_tensor_model_refuses_non_finite(upstream):
    spec = GatewaySpec(app="tensor", input_kind="tensor", inputs=[Column(type="tensor")])
    with serve(create_app(spec, upstream.url)) as url, httpx.Client(base_url=url, trust_env=False) as client:
        for raw in [b'{"inputs": [[1, NaN]]}', b'{"inputs": [[1e999, 2]]}']:
            resp = post_raw(client, raw)
            assert resp.status_code == 422 and "not finite" in resp.json()["detail"], resp.text
        assert post_raw(client, b'{"inputs": [{"x": 1}]}').status_code == 200


class CountingList(list):
    """A column whose elements count how often they are read."""

    reads = 0

    def __getitem__(self, index):
        CountingList.reads += 1
        return super().__getitem__(index)


def test_limits_are_checked_before_rows_are_built():
    CountingList.reads = 0
    columns = {c: CountingList([1.0] * 1000) for c in COLS}
    with pytest.raises(InputError) as too_many:
        extract_rows({"inputs": columns}, COLS, max_rows=100)
    assert too_many.value.status == 413 and CountingList.reads == 0
    junk = {f"c{i}": CountingList([1.0]) for i in range(10_000)}
    with pytest.raises(InputError) as unknown:
        extract_rows({"inputs": {COLS[0]: CountingList([1.0]), **junk}}, COLS, max_rows=100)
    assert unknown.value.status == 422 and CountingList.reads == 0
    assert "'c0'" in unknown.value.detail and "(and 9995 more)" in unknown.value.detail
    with pytest.raises(InputError) as rows:
        extract_rows({"inputs": [[1.0] * 4] * 101}, COLS, max_rows=100)
    assert rows.value.status == 413


def test_many_columns_and_huge_names_are_422_with_a_short_message(gateway):
    wide = dict(RECORDS[0], **{f"x{i}": 1 for i in range(3000)})
    resp = predict(gateway, {"dataframe_records": [wide]})
    assert resp.status_code == 422 and "unknown field(s)" in resp.json()["detail"]
    assert len(resp.text) < 2000
    long_name = "k" * 40_000
    resp = predict(gateway, {"inputs": RECORDS, long_name: 1})
    assert resp.status_code == 422 and len(resp.text) < 2000


def test_lone_surrogate_is_422(gateway):
    spec_field = COLS[0]
    raw = json.dumps(dict(RECORDS[0], **{spec_field: 1.0})).replace("1.0", '"\\ud800"', 1).encode()
    resp = post_raw(gateway, raw)
    assert resp.status_code == 422  # a string where a number belongs
    spec = GatewaySpec(app="text", inputs=[Column(name="t", type="string")])
    with serve(create_app(spec, "http://127.0.0.1:9")) as url, httpx.Client(base_url=url, trust_env=False) as client:
        resp = post_raw(client, b'{"t": "\\ud800"}')
        assert resp.status_code == 422 and "surrogate" in resp.json()["detail"], resp.text


def test_model_failure_passes_request_id_and_class(gateway):
    resp = predict(gateway, {"inputs": [[-4, 0, 0, 0]]})
    assert resp.status_code == 502
    assert resp.json()["request_id"] == "0123abcd" and resp.json()["error_class"] == "ValueError"


def test_unexpected_error_answers_request_id_not_traceback(upstream, caplog, monkeypatch):
    monkeypatch.setenv("HOME_MLOPS_DEPLOY_ID", "d-500")
    app = create_app(iris_spec(), upstream.url)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("/secret/path/model.pkl exploded")

    with serve(app) as url, httpx.Client(base_url=url, trust_env=False) as client:
        with caplog.at_level("ERROR", logger="home_mlops.gateway"):
            resp = client.get("/boom")
    assert resp.status_code == 500
    body = resp.json()
    assert body["error_class"] == "RuntimeError" and len(body["request_id"]) == 16
    assert resp.headers["x-home-mlops-deploy-id"] == "d-500"
    assert resp.headers["server-timing"].startswith("parse;dur=")  # on this answer too
    assert "secret" not in resp.text and "Traceback" not in resp.text
    assert body["request_id"] in caplog.text and "/secret/path/model.pkl" in caplog.text


def test_deploy_id_header_on_every_response(upstream, monkeypatch):
    monkeypatch.setenv("HOME_MLOPS_DEPLOY_ID", "d-20260101.abc")
    app = create_app(iris_spec(), upstream.url)
    with serve(app) as url, httpx.Client(base_url=url, trust_env=False) as client:
        answers = [client.post("/predict", json=RECORDS[0]), client.post("/predict", json={"x": 1}),
                   post_raw(client, b"[[", "text/plain"), client.get("/healthz"), client.get("/metrics"),
                   client.get("/nowhere"), client.delete("/predict")]
    assert [r.status_code for r in answers] == [200, 422, 415, 200, 200, 404, 405]
    assert all(r.headers["x-home-mlops-deploy-id"] == "d-20260101.abc" for r in answers)
    monkeypatch.delenv("HOME_MLOPS_DEPLOY_ID")
    with serve(create_app(iris_spec(), upstream.url)) as url:
        assert "x-home-mlops-deploy-id" not in httpx.get(url + "/healthz", trust_env=False).headers
    monkeypatch.setenv("HOME_MLOPS_DEPLOY_ID", "bad\r\nSet-Cookie: x=1")
    with pytest.raises(ValueError, match="HOME_MLOPS_DEPLOY_ID"):
        create_app(iris_spec(), upstream.url)


def test_bad_deploy_id_stops_the_gateway_before_it_binds(workdir, upstream):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOME_MLOPS_")}
    env.update({"PYTHONPATH": str(workdir), "HOME_MLOPS_GATEWAY_HOST": "127.0.0.1",
                "HOME_MLOPS_GATEWAY_PORT": str(free_port()), "HOME_MLOPS_UPSTREAM_URL": upstream.url,
                "HOME_MLOPS_DEPLOY_ID": "x y"})
    proc = subprocess.run([sys.executable, "-m", "gateway"], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "HOME_MLOPS_DEPLOY_ID" in proc.stderr and "Traceback" not in proc.stderr
