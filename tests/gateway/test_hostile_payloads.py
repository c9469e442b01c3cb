"""Hostile payloads get a 4xx, never a 5xx (issue 9 item 5).

Two parts:

- the default BentoML service's guard (templates/service.py), imported the way
  BentoML imports it (the file next to its home_mlops_service.json) and driven
  in-process: the checks, the ASGI middleware in front of BentoML, and the
  row-by-row retry that keeps one failing row from failing a whole batch;
- the corpus: every hostile body over real HTTP to the real gateway and the real
  model server, each in its own container (images built by the CLI with
  --no-push, memory-limited, network_mode host on 127.0.0.1 ports 18500-18599):
  no 5xx, a good request answers 200 right after each, memory stays under the
  limit; and concurrent good and bad requests to the model server, batched
  together, where every good one answers 200.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import shutil
import socket
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import ROOT, docker_reason, run_cli, wait_container_ready

COLS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
GOOD = dict(zip(COLS, [5.1, 3.5, 1.4, 0.2]))
TEMPLATE = ROOT / "pyhelpers" / "home_mlops" / "build" / "templates" / "service.py"
RAWBODY = ROOT / "pyhelpers" / "home_mlops" / "gateway" / "rawbody.py"


# --------------------------------------------------------------------------- the service's guard, in-process


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """templates/service.py loaded from a bento-like folder (the model is only loaded when served)."""
    folder = tmp_path_factory.mktemp("bento-src")
    shutil.copyfile(TEMPLATE, folder / "service.py")
    shutil.copyfile(RAWBODY, folder / "rawbody.py")  # as render_source lays the bento folder out
    (folder / "home_mlops_service.json").write_text(json.dumps({
        "service_name": "hmt_e_guard", "model_tag": "hmt-e-none:0",
        "inputs": [{"name": "x", "type": "double"}, {"name": "n", "type": "long", "required": False},
                   {"name": "i", "type": "integer", "required": False},
                   {"name": "f", "type": "float", "required": False},
                   {"name": "b", "type": "boolean", "required": False},
                   {"name": "s", "type": "string", "required": False}],
    }))
    spec = importlib.util.spec_from_file_location(f"hmt_e_service_{uuid.uuid4().hex[:6]}", folder / "service.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # BentoML imports the service with the bento folder on the path
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def refused(service, payload, column_based=True):
    with pytest.raises(service.Refused) as info:
        service.validate(payload, service.COLUMNS, column_based)
    return info.value


def test_records_are_checked_against_the_signature(service):
    assert service.validate({"inputs": [{"x": 1}, {"x": 2.5, "n": 3, "s": "t"}]}, service.COLUMNS, True)
    cases = [
        ({"inputs": [{"x": float("nan")}]}, 422, "x"),
        ({"inputs": [{"x": float("inf")}]}, 422, "x"),
        ({"inputs": [{"x": 10**400}]}, 422, "x"),
        ({"inputs": [{"x": 1, "n": 2**63}]}, 422, "n"),
        ({"inputs": [{"x": 1, "n": -(2**63) - 1}]}, 422, "n"),
        ({"inputs": [{"x": 1, "i": 2**31}]}, 422, "i"),
        ({"inputs": [{"x": 1, "f": 3.5e38}]}, 422, "f"),
        ({"inputs": [{"x": 1, "s": "\ud800"}]}, 422, "s"),
        ({"inputs": [{"x": 1, "n": 1.5}]}, 400, "n"),
        ({"inputs": [{"x": "1"}]}, 400, "x"),
        ({"inputs": [{"x": True}]}, 400, "x"),
        ({"inputs": [{"x": None}]}, 400, "x"),
        ({"inputs": [{"x": 1, "b": 1}]}, 400, "b"),
        ({"inputs": [{"n": 1}]}, 400, "x"),
        ({"inputs": [{"x": 1, "zz": 1}]}, 400, "zz"),
        ({"inputs": [{"x": 1, **{f"c{i}": 1 for i in range(10_000)}}]}, 400, "c0"),
    ]
    for payload, status, field in cases:
        error = refused(service, payload)
        assert (error.status, error.field) == (status, field), (payload if len(str(payload)) < 200 else field, error.message)
        assert len(error.message) < 300
    assert service.validate({"inputs": [{"x": 1, "n": 2**63 - 1, "i": -(2**31), "f": 3.4e38}]}, service.COLUMNS, True)
    for payload in [[], 42, {"inputs": []}, {"inputs": {}}, {"inputs": [None]}, {"inputs": [[1]]},
                    {"inputs": [{"x": 1}], "params": {}}, {"instances": [{"x": 1}]}]:
        assert refused(service, payload).status == 400, payload
    assert refused(service, {"inputs": [{"x": 1}] * 10_001}).status == 413


def test_tensors_are_rectangular_and_finite(service):
    columns = [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}}]
    assert service.validate({"inputs": [[1, 2], [3, 4]]}, columns, False)
    for payload, status in [({"inputs": [[1, 2], [3]]}, 400), ({"inputs": [[1, float("nan")]]}, 422),
                            ({"inputs": [[1, 2, 3]]}, 400), ({"inputs": [1, 2]}, 400)]:
        with pytest.raises(service.Refused) as info:
            service.validate(payload, columns, False)
        assert info.value.status == status, payload


def test_raw_body_checks(service):
    for raw in [b"\xff", "{\"inputs\": \"\u00e9\"}".encode("latin-1"), b"[" * 1_000_000, b"{", b"", b"NaN-ish"]:
        with pytest.raises(service.BodyRefused) as info:
            service.decode_json(raw, service.MAX_DEPTH)
        assert info.value.status == 400, raw[:20]
    assert service.decode_json(b'{"inputs": [{"x": 1}]}', service.MAX_DEPTH) == {"inputs": [{"x": 1}]}
    for header in ["", "text/plain", "multipart/form-data", "application/vnd.bentoml+pickle",
                   "application/json; charset=utf-16"]:
        with pytest.raises(service.BodyRefused) as info:
            service.check_content_type(header)
        assert info.value.status == 415
    service.check_content_type("application/json; charset=UTF-8")


class Recorder:
    """A stand-in for BentoML's app behind the middleware: records what reached it, answers a JSON list."""

    def __init__(self, answer: bytes = b"[0]"):
        self.seen: list[bytes] = []
        self.answer = answer

    async def __call__(self, scope, receive, send):
        message = await receive()
        self.seen.append(message["body"])
        assert dict(scope["headers"])[b"content-length"] == str(len(message["body"])).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": self.answer})


def call_asgi(app, body: bytes, content_type: bytes = b"application/json", path: str = "/predict"):
    sent: list[dict] = []
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)] or [b""]
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]}
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:])


def test_middleware_stops_bad_bodies_before_bentoml(service):
    inner = Recorder()
    guard = service.PayloadGuard(inner, columns=service.COLUMNS, column_based=True)
    # duplicate keys: what reaches BentoML is what was checked (re-serialized), not the client's bytes
    status, _ = call_asgi(guard, b'{"inputs": [{"x": "bad"}], "inputs": [{"x": 1.5}]}')
    assert status == 200 and inner.seen == [b'{"inputs": [{"x": 1.5}]}']
    for body, content_type, expected in [
        (b'{"inputs": [{"x": NaN}]}', b"application/json", 422),
        (b'{"inputs": [{"x": 1e999}]}', b"application/json", 422),
        (b'{"inputs": [{"x": "1"}]}', b"application/json", 400),
        (b"[" * 100_000, b"application/json", 400),
        (b"\xc0\xaf", b"application/json", 400),
        (b'{"inputs": [{"x": 1}]}', b"text/plain", 415),
        (b'{"inputs": [{"x": 1}]}' + b" " * (1024 * 1024), b"application/json", 413),
    ]:
        status, answer = call_asgi(guard, body, content_type)
        assert status == expected, (body[:40], answer)
        assert b"error" in answer
    assert len(inner.seen) == 1  # none of them reached BentoML
    # other routes pass through untouched
    assert call_asgi(guard, b"anything", b"text/plain", path="/readyz")[0] == 200


def test_a_failing_row_fails_only_its_own_request(service, caplog):
    """The batch method retries row by row; the middleware turns a failed row into a 500 with a request id."""
    predict = service.ModelService.apis["predict"].func

    class Model:
        calls: list[int] = []

        def _predict(self, rows):
            Model.calls.append(len(rows))
            if any(r.get("x") == 13 for r in rows):
                raise ValueError("/models/secret/path.pkl: unlucky row")
            return [r["x"] * 2 for r in rows]

    with caplog.at_level("ERROR", logger="home_mlops.service"):
        answers = predict(Model(), [{"x": 1}, {"x": 13}, {"x": 2}])
    assert Model.calls == [3, 1, 1, 1]
    assert answers[0] == 2 and answers[2] == 4
    failure = answers[1][service.FAILURE_KEY]
    assert failure["error_class"] == "ValueError" and failure["request_id"] in caplog.text
    assert "/models/secret/path.pkl" in caplog.text

    # the request that holds the failed row answers 500 with the id and the class only
    guard = service.PayloadGuard(Recorder(json.dumps([answers[1]]).encode()), columns=service.COLUMNS, column_based=True)
    status, body = call_asgi(guard, b'{"inputs": [{"x": 13}]}')
    assert status == 500
    assert json.loads(body) == {"error": "the model failed on this input; the server log has the detail under request_id",
                                **failure}
    assert b"secret" not in body and b"Traceback" not in body
    # the requests batched with it answer normally
    guard = service.PayloadGuard(Recorder(json.dumps([answers[0]]).encode()), columns=service.COLUMNS, column_based=True)
    assert call_asgi(guard, b'{"inputs": [{"x": 1}]}') == (200, b"[2]")


# --------------------------------------------------------------------------- the corpus, against real containers


def _record_json(values: list[str]) -> str:
    return "{" + ", ".join(f"{json.dumps(c)}: {v}" for c, v in zip(COLS, values)) + "}"


def _inputs(*records: str) -> bytes:
    return ('{"inputs": [' + ", ".join(records) + "]}").encode()


GOOD_JSON = _record_json(["5.1", "3.5", "1.4", "0.2"])
JSON_TYPE = "application/json"
ANY = "any"  # a body that may be accepted (it is valid, if odd): only "no 5xx" holds

#: name -> (body, content type, expected: "4xx" or ANY)
CORPUS: dict[str, tuple[bytes, str | None, str]] = {
    "deep_arrays": (b"[" * 100_000, JSON_TYPE, "4xx"),
    "deep_objects": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, JSON_TYPE, "4xx"),
    "deep_balanced_1mb": (b"[" * 500_000 + b"]" * 500_000, JSON_TYPE, "4xx"),
    "deep_inside_inputs": (b'{"inputs": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}", JSON_TYPE, "4xx"),
    "deep_in_a_field": (b'{"inputs": [{"sepal length (cm)": ' + b'{"a": ' * 60 + b"1" + b"}" * 60 + b"}]}", JSON_TYPE, "4xx"),
    "nan": (_inputs(_record_json(["NaN", "3.5", "1.4", "0.2"])), JSON_TYPE, "4xx"),
    "infinity": (_inputs(_record_json(["5.1", "Infinity", "1.4", "0.2"])), JSON_TYPE, "4xx"),
    "minus_infinity": (_inputs(_record_json(["5.1", "3.5", "-Infinity", "0.2"])), JSON_TYPE, "4xx"),
    "float_overflow": (_inputs(_record_json(["5.1", "3.5", "1.4", "1e999"])), JSON_TYPE, "4xx"),
    "int_beyond_double": (_inputs(_record_json([str(10**400), "3.5", "1.4", "0.2"])), JSON_TYPE, "4xx"),
    "int_5000_digits": (_inputs(_record_json(["9" * 5000, "3.5", "1.4", "0.2"])), JSON_TYPE, "4xx"),
    "columns_dict_1mb": (json.dumps({"inputs": {c: [1.5] * 50_000 for c in COLS}}).encode(), JSON_TYPE, "4xx"),
    "ten_thousand_columns": (json.dumps({"inputs": [dict(GOOD, **{f"c{i}": 1 for i in range(10_000)})]}).encode(),
                             JSON_TYPE, "4xx"),
    "too_many_rows": (json.dumps({"inputs": [list(GOOD.values())] * 12_000}).encode(), JSON_TYPE, "4xx"),
    "string_for_number": (_inputs(_record_json(['"5.1"', "3.5", "1.4", "0.2"])), JSON_TYPE, "4xx"),
    "bool_for_number": (_inputs(_record_json(["true", "3.5", "1.4", "0.2"])), JSON_TYPE, "4xx"),
    "object_for_number": (_inputs(_record_json(['{"$gt": 1}', "3.5", "1.4", "0.2"])), JSON_TYPE, "4xx"),
    "null_value": (_inputs(_record_json(["null", "3.5", "1.4", "0.2"])), JSON_TYPE, "4xx"),
    "null_row": (b'{"inputs": [null]}', JSON_TYPE, "4xx"),
    "missing_field": (json.dumps({"inputs": [{COLS[0]: 1.0}]}).encode(), JSON_TYPE, "4xx"),
    "wrong_tensor_shape": (b'{"inputs": [[1, 2, 3]]}', JSON_TYPE, "4xx"),
    "ragged_rows": (b'{"inputs": [[1, 2, 3, 4], [1, 2]]}', JSON_TYPE, "4xx"),
    "unicode_field_names": (json.dumps({"inputs": [{"\u00df\u20ac\U0001d518": 1, "\u202e": 2}]}).encode(), JSON_TYPE, "4xx"),
    "lone_surrogate_name": (b'{"inputs": [{"\\ud800": 1}]}', JSON_TYPE, "4xx"),
    "huge_string": (_inputs(_record_json(['"' + "x" * 900_000 + '"', "3.5", "1.4", "0.2"])), JSON_TYPE, "4xx"),
    "huge_key": (json.dumps({"inputs": [GOOD], "k" * 900_000: 1}).encode(), JSON_TYPE, "4xx"),
    "over_body_limit": (json.dumps({"inputs": [GOOD] * 12_000, "pad": "x" * 300_000}).encode(), JSON_TYPE, "4xx"),
    "text_plain": (_inputs(GOOD_JSON), "text/plain", "4xx"),
    "form_urlencoded": (b"inputs=1&inputs=2", "application/x-www-form-urlencoded", "4xx"),
    "multipart": (b"--x\r\nContent-Disposition: form-data; name=\"inputs\"\r\n\r\n[1]\r\n--x--\r\n",
                  "multipart/form-data; boundary=x", "4xx"),
    "bentoml_pickle": (b"\x80\x04N.", "application/vnd.bentoml+pickle", "4xx"),
    "no_content_type": (_inputs(GOOD_JSON), None, "4xx"),
    "latin1_charset": (_inputs(GOOD_JSON), "application/json; charset=latin-1", "4xx"),
    "invalid_utf8": (b'{"inputs": [{"\xff\xfe": 1}]}', JSON_TYPE, "4xx"),
    "utf16_body": (_inputs(GOOD_JSON).decode().encode("utf-16"), JSON_TYPE, "4xx"),
    "bom": (b"\xef\xbb\xbf" + _inputs(GOOD_JSON), JSON_TYPE, "4xx"),
    "truncated": (_inputs(GOOD_JSON)[:-7], JSON_TYPE, "4xx"),
    "empty_body": (b"", JSON_TYPE, "4xx"),
    "top_level_scalar": (b"42", JSON_TYPE, "4xx"),
    "empty_inputs": (b'{"inputs": []}', JSON_TYPE, "4xx"),
    "extra_top_level_key": (b'{"inputs": [' + GOOD_JSON.encode() + b'], "__proto__": {"admin": true}}', JSON_TYPE, "4xx"),
    "duplicate_keys": (('{"inputs": [{"sepal length (cm)": "bad"}], "inputs": [' + GOOD_JSON + "]}").encode(), JSON_TYPE, ANY),
    "denormal_and_negative_zero": (_inputs(_record_json(["5e-324", "-0.0", "1.4", "0.2"])), JSON_TYPE, ANY),
}


def _free_port_in_range(low: int, high: int, taken: set[int]) -> int:
    for port in range(low, high):
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


def memory_peak(container) -> int:
    """The container's memory high-water mark, in bytes (cgroup v1: docker stats; v2: memory.peak)."""
    stats = container.stats(stream=False)["memory_stats"]
    if stats.get("max_usage"):
        return int(stats["max_usage"])
    code, out = container.exec_run(["cat", "/sys/fs/cgroup/memory.peak"])
    assert code == 0, out
    return int(out.decode().strip())


BENTO_LIMIT = 1024**3
GATEWAY_LIMIT = 512 * 1024**2


@pytest.fixture(scope="module")
def pair(trained_run, local_platform, tmp_path_factory):
    """The sklearn iris pair, built with --no-push, served from memory-limited containers on 127.0.0.1."""
    if docker_reason():
        pytest.skip(docker_reason())
    import docker

    app = "tabular-iris-multi-classifier"
    run = trained_run(app)
    env = {**run.env, "AR_NAME": local_platform.registry}
    out = tmp_path_factory.mktemp("hmt-e-build")
    images = {}
    for role, command in (("bento", "bento-build"), ("gateway", "fastapi-build")):
        result = out / f"{role}.json"
        proc = run_cli([command, "--app", app, "--experiment-id", run.experiment_id, "--run-id", run.run_id,
                        "--no-push", "--json", str(result)], env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        images[role] = json.loads(result.read_text())["image"]

    client = docker.from_env()
    taken: set[int] = set()
    bento_port, gateway_port = _free_port_in_range(18500, 18600, taken), _free_port_in_range(18500, 18600, taken)
    suffix = uuid.uuid4().hex[:6]
    containers = []
    try:
        bento = client.containers.run(
            images["bento"], name=f"hmt-e-bento-{suffix}", detach=True, network_mode="host",
            mem_limit=BENTO_LIMIT, memswap_limit=BENTO_LIMIT,
            environment={"BENTOML_PORT": str(bento_port), "BENTOML_HOST": "127.0.0.1"},
        )
        containers.append(bento)
        gateway = client.containers.run(
            images["gateway"], name=f"hmt-e-gateway-{suffix}", detach=True, network_mode="host",
            mem_limit=GATEWAY_LIMIT, memswap_limit=GATEWAY_LIMIT,
            environment={"HOME_MLOPS_GATEWAY_HOST": "127.0.0.1", "HOME_MLOPS_GATEWAY_PORT": str(gateway_port),
                         "HOME_MLOPS_UPSTREAM_URL": f"http://127.0.0.1:{bento_port}",
                         "HOME_MLOPS_DEPLOY_ID": f"hmt-e-{suffix}"},
        )
        containers.append(gateway)
        bento_url, gateway_url = f"http://127.0.0.1:{bento_port}", f"http://127.0.0.1:{gateway_port}"
        wait_container_ready(bento_url + "/readyz", bento)
        wait_container_ready(gateway_url + "/readyz", gateway)
        yield {"bento": (bento, bento_url), "gateway": (gateway, gateway_url), "deploy_id": f"hmt-e-{suffix}"}
    finally:
        for container in containers:
            container.remove(force=True)


def _post(url: str, body: bytes, content_type: str | None) -> httpx.Response:
    headers = {"content-type": content_type} if content_type is not None else {}
    with httpx.Client(trust_env=False, timeout=60) as c:
        return c.post(url + "/predict", content=body, headers=headers)


def _good(url: str, role: str) -> httpx.Response:
    body = {"inputs": [GOOD]} if role == "bento" else {"dataframe_records": [GOOD]}
    with httpx.Client(trust_env=False, timeout=60) as c:
        return c.post(url + "/predict", json=body)


@pytest.mark.docker
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("role", ["bento", "gateway"])
def test_hostile_corpus_gets_4xx_and_the_server_keeps_serving(pair, role, capsys):
    assert len(CORPUS) >= 30
    container, url = pair[role]
    outcomes: dict[str, int] = {}
    for name, (body, content_type, expected) in CORPUS.items():
        resp = _post(url, body, content_type)
        outcomes[name] = resp.status_code
        assert resp.status_code < 500, (role, name, resp.status_code, resp.text[:300])
        if expected == "4xx":
            assert 400 <= resp.status_code < 500, (role, name, resp.status_code, resp.text[:300])
        assert "Traceback" not in resp.text and "/home/" not in resp.text and "/opt/venv" not in resp.text
        after = _good(url, role)
        assert after.status_code == 200, (role, name, after.status_code, after.text[:300])
        if role == "gateway":
            assert after.headers["x-home-mlops-deploy-id"] == pair["deploy_id"]
            assert resp.headers["x-home-mlops-deploy-id"] == pair["deploy_id"]
    container.reload()
    assert container.status == "running" and not container.attrs["State"]["OOMKilled"]
    limit = BENTO_LIMIT if role == "bento" else GATEWAY_LIMIT
    peak = memory_peak(container)
    assert peak < limit
    statuses = sorted(set(outcomes.values()))
    with capsys.disabled():
        print(f"\n[hostile payloads] {role}: {len(outcomes)} bodies, 5xx: 0, statuses {statuses}, "
              f"memory peak {peak / 1024**2:.0f} MiB of {limit / 1024**2:.0f} MiB")


def _batch_sizes_seen(url: str) -> tuple[float, float]:
    """(observations, observations of a batch of 1 request) from BentoML's adaptive batch histogram."""
    text = httpx.get(url + "/metrics", timeout=10, trust_env=False).text
    total = ones = 0.0
    for line in text.splitlines():
        if line.startswith("bentoml_service_adaptive_batch_size_count"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("bentoml_service_adaptive_batch_size_bucket") and re.search(r'le="1(\.0)?"', line):
            ones += float(line.rsplit(" ", 1)[1])
    return total, ones


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_bad_rows_never_fail_good_requests_batched_with_them(pair):
    """Good and bad requests at once: the bad ones are refused before batching, the good ones all answer 200."""
    _, url = pair["bento"]
    with httpx.Client(trust_env=False, timeout=60) as c:
        solo = c.post(url + "/predict", json={"inputs": [GOOD]}).json()
    # rows that would have failed a whole batch inside the model before the guard: wrong type, NaN, huge int
    bad_bodies = [
        _inputs(_record_json(['"x"', "3.5", "1.4", "0.2"])),
        _inputs(_record_json(["NaN", "3.5", "1.4", "0.2"])),
        _inputs(_record_json([str(10**400), "3.5", "1.4", "0.2"])),
        json.dumps({"inputs": [{COLS[0]: 1.0}]}).encode(),
    ]
    good_body = json.dumps({"inputs": [GOOD]}).encode()

    def send(i: int) -> tuple[bool, int, str]:
        is_good = i % 2 == 0
        body = good_body if is_good else bad_bodies[(i // 2) % len(bad_bodies)]
        with httpx.Client(trust_env=False, timeout=60) as c:
            resp = c.post(url + "/predict", content=body, headers={"content-type": JSON_TYPE})
        return is_good, resp.status_code, resp.text

    before = _batch_sizes_seen(url)
    merged = False
    for _ in range(5):  # until BentoML has merged requests into one batch at least once
        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(pool.map(send, range(256)))
        for is_good, status, text in results:
            if is_good:
                assert status == 200 and json.loads(text) == solo, (status, text[:300])
            else:
                assert status in (400, 422), (status, text[:300])
        total, ones = _batch_sizes_seen(url)
        if total - before[0] > ones - before[1]:
            merged = True
            break
    assert merged, "BentoML never batched concurrent requests together: adaptive batching is off?"
