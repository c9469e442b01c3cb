"""Every protocol of the front gateway over the same checks, against the real model-server stand-in.

The stand-in (test_gateway_app.Upstream, a real HTTP server) answers each record's sum,
so an answer shows exactly which values reached the model. Each test can fail: a
protocol that drops, reorders or retypes a value, a route that skips a body check, a
missing Server-Timing stage, or an overloaded gateway that queues instead of refusing.
"""
from __future__ import annotations

import concurrent.futures
import json
import re
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from home_mlops.gateway.app import create_app
from home_mlops.gateway.backend import STAGES
from home_mlops.gateway.envelope import row_count
from home_mlops.gateway.spec import Column, GatewaySpec
from test_gateway_app import COLS, RECORDS, ROWS, SUMS, Upstream, iris_spec, serve
from test_hostile_payloads import ANY, CORPUS  # the corpus the containers get, here on every route
import test_gateway_app

# the module fixtures of the /predict tests, one instance per module here too: a stand-in model
# server and a front door in front of it (HOME_MLOPS_MAX_BODY_BYTES=65536, HOME_MLOPS_MAX_ROWS=100)
upstream = test_gateway_app.upstream
gateway = test_gateway_app.gateway

APP = iris_spec().app
INFER = f"/v2/models/{APP}/infer"


def v2_request(rows: list[list[float]], datatype: str = "FP64", nested: bool = False) -> dict:
    return {"id": "req-1", "inputs": [
        {"name": c, "shape": [len(rows), 1] if nested else [len(rows)], "datatype": datatype,
         "data": [[r[i]] for r in rows] if nested else [r[i] for r in rows]}
        for i, c in enumerate(COLS)]}


# --------------------------------------------------------------------------- V2


@pytest.mark.parametrize("nested", [False, True])
def test_v2_infer_answers_equal_predict(gateway, nested):
    predicted = gateway.post("/predict", json={"dataframe_split": {"columns": COLS, "data": ROWS}})
    assert predicted.status_code == 200, predicted.text
    resp = gateway.post(INFER, json=v2_request(ROWS, nested=nested))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_name"] == APP and body["id"] == "req-1"
    [output] = body["outputs"]
    assert output["data"] == predicted.json()["predictions"] == SUMS
    assert output["shape"] == [len(ROWS)] and output["datatype"] == "FP64"


def test_v2_metadata_lists_the_signature_inputs_with_datatypes(gateway):
    meta = gateway.get(f"/v2/models/{APP}").json()
    assert meta["name"] == APP and meta["platform"] == "mlflow"
    assert meta["inputs"] == [{"name": c, "datatype": "FP64", "shape": [-1]} for c in COLS]
    assert meta["versions"] == [iris_spec().run_id]


def test_v2_metadata_maps_every_mlflow_type(upstream):
    spec = GatewaySpec(app="mixed", inputs=[
        Column(name="a", type="long"), Column(name="b", type="integer"), Column(name="c", type="float"),
        Column(name="d", type="boolean"), Column(name="e", type="string"), Column(name="f", type="datetime")])
    with serve(create_app(spec, upstream.url)) as url:
        meta = httpx.get(url + "/v2/models/mixed", trust_env=False).json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("a", "INT64"), ("b", "INT32"), ("c", "FP32"), ("d", "BOOL"), ("e", "BYTES"), ("f", "BYTES")]


def test_v2_health_and_unknown_model(gateway, upstream):
    assert gateway.get("/v2/health/live").json() == {"live": True}
    assert gateway.get("/v2/health/ready").json() == {"ready": True}
    assert gateway.get(f"/v2/models/{APP}/ready").status_code == 200
    upstream.ready_status = 503
    try:
        assert gateway.get("/v2/health/ready").status_code == 503
    finally:
        upstream.ready_status = 200
    for path in ("/v2/models/other", "/v2/models/other/ready"):
        assert gateway.get(path).status_code == 404 and "other" in gateway.get(path).json()["error"]
    assert gateway.post("/v2/models/other/infer", json=v2_request(ROWS)).status_code == 404


@pytest.mark.parametrize("change, status", [
    (lambda r: r["inputs"][0].update(shape=[3]), 422),            # shape says 3 values, data has 2
    (lambda r: r["inputs"][0].update(datatype="BYTES"), 422),     # a double column sent as text
    (lambda r: r["inputs"][0].update(datatype="FP128"), 422),     # not a V2 datatype
    (lambda r: r["inputs"][0].update(name="color"), 422),         # not a signature column
    (lambda r: r["inputs"][1].update(data=["x", 1.0]), 422),      # a string in a double column
    (lambda r: r["inputs"].pop(), 422),                           # a required column missing
    (lambda r: r["inputs"][0].update(shape=[500], data=[1.0] * 500), 413),  # over HOME_MLOPS_MAX_ROWS
    (lambda r: r.update(inputs=[]), 422),
])
def test_v2_infer_refuses_what_predict_refuses(gateway, upstream, change, status):
    request = v2_request(ROWS)
    change(request)
    before = len(upstream.received)
    resp = gateway.post(INFER, json=request)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]
    assert len(upstream.received) == before  # nothing reached the model server


def test_v2_missing_column_names_the_field(gateway):
    request = v2_request(ROWS)
    request["inputs"] = request["inputs"][:3]
    resp = gateway.post(INFER, json=request)
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == COLS[3]


# --------------------------------------------------------------------------- /invocations


def test_invocations_json_and_csv_answer_like_predict(gateway):
    csv_body = ",".join(COLS) + "\n" + "\n".join(",".join(str(v) for v in r) for r in ROWS) + "\n"
    answers = [
        gateway.post("/invocations", json={"dataframe_split": {"columns": COLS, "data": ROWS}}),
        gateway.post("/invocations", json={"dataframe_records": RECORDS}),
        gateway.post("/invocations", json={"inputs": ROWS, "params": {"ignored": 1}}),  # no params schema: ignored
        gateway.post("/invocations", content=csv_body.encode(), headers={"content-type": "text/csv"}),
        gateway.post("/invocations", content=csv_body.encode(), headers={"content-type": "text/csv; charset=utf-8"}),
    ]
    for resp in answers:
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"predictions": SUMS}


def test_invocations_errors_have_mlflows_shape(gateway):
    bad = gateway.post("/invocations", json={"dataframe_records": [dict(RECORDS[0], **{COLS[1]: "x"})]})
    assert bad.status_code == 400  # MLflow answers a record that does not fit with 400 BAD_REQUEST
    assert bad.json()["error_code"] == "BAD_REQUEST" and COLS[1] in bad.json()["message"]
    assert bad.json()["errors"][0]["field"] == COLS[1]
    csv_bad = gateway.post("/invocations", content=(",".join(COLS) + "\n1,2,three,4\n").encode(),
                        headers={"content-type": "text/csv"})
    assert csv_bad.status_code == 400 and COLS[2] in csv_bad.json()["message"]
    wrong_type = gateway.post("/invocations", content=b"a,b", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415 and wrong_type.json()["error_code"] == "BAD_REQUEST"
    assert "text/csv" in wrong_type.json()["message"]


def test_params_are_passed_only_where_the_signature_declares_them(upstream):
    spec = GatewaySpec(app="with-params", inputs=[Column(name="x", type="double")],
                       params=[{"name": "k", "type": "long", "default": 1, "shape": None}])
    front_doors = []
    with serve(create_app(spec, upstream.url)) as url, httpx.Client(base_url=url, trust_env=False) as client:
        front_doors.append(client.post("/invocations", json={"inputs": [[1.0]]}))
        # the BentoML model server takes no params: said so, instead of predicting without them
        with_params = client.post("/invocations", json={"inputs": [[1.0]], "params": {"k": 3}})
    assert front_doors[0].status_code == 200
    assert with_params.status_code == 400 and "params" in with_params.json()["message"]


# --------------------------------------------------------------------------- Server-Timing, metrics


def _stages(header: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"(\w+);dur=([0-9.]+)", header)}


def test_server_timing_on_every_answer_with_the_five_stages(gateway):
    answers = [gateway.post("/predict", json=RECORDS[0]), gateway.post("/invocations", json={"inputs": ROWS}),
               gateway.post(INFER, json=v2_request(ROWS)), gateway.post("/predict", json={"x": 1}),
               gateway.get("/healthz"), gateway.get("/nowhere")]
    for resp in answers:
        stages = _stages(resp.headers["server-timing"])
        assert list(stages) == list(STAGES), resp.headers["server-timing"]
    ok = _stages(answers[0].headers["server-timing"])
    assert ok["parse"] > 0 and ok["validate"] > 0 and ok["predict"] > 0 and ok["serialize"] > 0
    refused = _stages(answers[3].headers["server-timing"])
    assert refused["predict"] == 0  # refused before it reached the model


def test_metrics_have_the_stage_histograms_and_process_figures(gateway):
    gateway.post("/predict", json=RECORDS[0])
    gateway.post(INFER, json=v2_request(ROWS))
    families = {f.name: f for f in text_string_to_metric_families(gateway.get("/metrics").text)}
    counts = {(s.labels["endpoint"], s.labels["stage"]): s.value
              for s in families["gateway_stage_duration_seconds"].samples if s.name.endswith("_count")}
    for stage in STAGES:
        assert counts[("/predict", stage)] >= 1 and counts[("v2-infer", stage)] >= 1, stage
    assert "process_cpu_seconds" in families and "process_resident_memory_bytes" in families


# --------------------------------------------------------------------------- docs offline


def test_docs_and_redoc_name_no_external_host_and_every_asset_answers(gateway):
    for page in ("/docs", "/redoc"):
        html = gateway.get(page)
        assert html.status_code == 200
        assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html.text), html.text  # no external host
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text) + re.findall(r"url: '([^']+)'", html.text)
        assert any(a.endswith(".js") for a in assets), html.text
        for asset in assets:
            resp = gateway.get(asset)
            assert resp.status_code == 200 and len(resp.content) > 100, asset
    assert gateway.get("/docs/assets/..%2f..%2fapp.py").status_code == 404
    assert gateway.get("/docs/assets/spec.py").status_code == 404


# --------------------------------------------------------------------------- overload


def test_overload_answers_503_with_retry_after_not_a_timeout(monkeypatch):
    monkeypatch.setenv("HOME_MLOPS_MAX_IN_FLIGHT", "1")
    monkeypatch.setenv("HOME_MLOPS_MAX_QUEUE", "1")
    monkeypatch.setenv("HOME_MLOPS_QUEUE_TIMEOUT", "0.3")
    with Upstream(delay=1.0) as slow:
        app = create_app(iris_spec(), slow.url)
        with serve(app) as url:
            start = threading.Barrier(6)

            def one(_):
                with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
                    start.wait()
                    return client.post("/predict", json=RECORDS[0])

            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(one, range(6)))
            metrics = httpx.get(url + "/metrics", trust_env=False).text
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) >= 1 and codes.count(503) >= 4, codes  # one served, the queue of one timed out
    for resp in answers:
        if resp.status_code == 503:
            assert resp.headers["retry-after"] == "1" and "overloaded" in resp.json()["detail"]
            assert resp.elapsed.total_seconds() < 0.9  # quick: before the slow model would have answered
    assert "gateway_overload_refused_total" in metrics


# --------------------------------------------------------------------------- hostile bodies, every route

HOSTILE = {
    "wrong content type": (b'{"inputs": [[1, 2, 3, 4]]}', "text/plain", 415),
    "not UTF-8": (b'{"inputs": [[1, 2, 3, "\xff"]]}', "application/json", 400),
    "malformed": (b'{"inputs": [[1, 2,', "application/json", 400),
    "deep nesting": (b"[" * 5000 + b"]" * 5000, "application/json", 400),
    "empty": (b"", "application/json", 400),
    "too large": (b'{"inputs": "' + b"x" * 70_000 + b'"}', "application/json", 413),
    "NaN": (b'{"inputs": [[1, 2, NaN, 4]]}', "application/json", 422),
    "junk keys": (json.dumps({"dataframe_records": [{f"k{i}": 1 for i in range(3000)}]}).encode(),
                  "application/json", 422),
}


@pytest.mark.parametrize("route", ["/predict", "/invocations", INFER])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bodies_on_every_route(gateway, upstream, route, case):
    raw, content_type, status = HOSTILE[case]
    if route == INFER and case in ("NaN", "junk keys"):  # the same values in V2's shape
        raw = {"NaN": b'{"inputs": [{"name": "%s", "shape": [1], "datatype": "FP64", "data": [NaN]}]}' % COLS[0].encode(),
               "junk keys": json.dumps({"inputs": [{"name": f"k{i}", "shape": [1], "datatype": "FP64", "data": [1]}
                                                   for i in range(300)]}).encode()}[case]
    before = len(upstream.received)
    resp = gateway.post(route, content=raw, headers={"content-type": content_type})
    expected = 400 if (route == "/invocations" and status == 422) else status  # MLflow's BAD_REQUEST
    assert resp.status_code == expected, (case, resp.text[:300])
    assert len(resp.content) < 2000 and "Traceback" not in resp.text
    assert len(upstream.received) == before
    assert gateway.post(route, json=v2_request(ROWS) if route == INFER else {"inputs": ROWS}).status_code == 200


def test_the_smoke_tests_row_count_uses_the_envelope_parser():
    assert row_count({"dataframe_split": {"columns": COLS, "data": ROWS}}) == 2
    assert row_count({"dataframe_records": RECORDS}) == 2
    assert row_count({"inputs": {c: [1.0, 2.0, 3.0] for c in COLS}}) == 3
    assert row_count({"instances": [[1, 2]]}) == 1
    assert row_count(RECORDS[0]) is None and row_count({"other": 1}) is None  # cannot tell without the names
    assert row_count({"inputs": {"a": [1], "b": [1, 2]}}) is None


@pytest.mark.parametrize("route", ["/predict", "/invocations"])
def test_a_lone_surrogate_in_a_field_name_is_a_4xx_not_a_500(gateway, route):
    resp = gateway.post(route, content=b'{"dataframe_records": [{"\\ud800": 1}]}',
                        headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500, resp.text
    assert "\\ud800" in resp.text  # echoed escaped, as JSON allows



@pytest.mark.parametrize("route", ["/predict", "/invocations", INFER])
def test_the_hostile_corpus_on_every_route_is_4xx_and_reaches_nothing(gateway, upstream, route):
    for name, (body, content_type, expected) in CORPUS.items():
        headers = {"content-type": content_type} if content_type is not None else {}
        before = len(upstream.received)
        resp = gateway.post(route, content=body, headers=headers)
        assert resp.status_code < 500, (route, name, resp.status_code, resp.text[:300])
        if expected != ANY:
            assert 400 <= resp.status_code < 500, (route, name, resp.status_code, resp.text[:300])
            assert len(upstream.received) == before, (route, name)  # refused before the model server
        assert len(resp.content) < 4000 and "Traceback" not in resp.text, (route, name)
    good = v2_request(ROWS) if route == INFER else {"inputs": ROWS}
    assert gateway.post(route, json=good).status_code == 200
