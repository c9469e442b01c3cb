"""The Open Inference (V2) protocol, so KServe / MLServer / Triton clients work unchanged.

- ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{app}/ready``
- ``GET /v2/models/{app}``: metadata from the signature (one input tensor per column,
  V2 datatypes, shape ``[-1]``; tensor signatures keep their own shapes)
- ``POST /v2/models/{app}/infer``: one input tensor per column (shape ``[n]`` or
  ``[n, 1]``, data flat or nested), answered with one output per prediction column.
The request goes through the same checks as ``/predict`` (body limits, nesting, the
signature's types); an error answers ``{"error": "..."}`` (plus ``errors`` naming rows
and fields) with the status ``/predict`` would give.
"""
from __future__ import annotations

import math
import uuid
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from . import jsonio
from .backend import Inputs, Timing
from .envelope import MISSING, RawColumns
from .errors import InputError, short
from .front import Front, Problem, add_fast_route, json_response
from .rawbody import check_content_type
from .spec import GatewaySpec

#: MLflow column type -> V2 datatype
DATATYPES = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32", "boolean": "BOOL",
             "string": "BYTES", "binary": "BYTES", "datetime": "BYTES"}
#: numpy dtype (tensor signatures) -> V2 datatype
NUMPY_DATATYPES = {"float64": "FP64", "float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32",
                   "int16": "INT16", "int8": "INT8", "uint64": "UINT64", "uint32": "UINT32", "uint16": "UINT16",
                   "uint8": "UINT8", "bool": "BOOL", "object": "BYTES", "str": "BYTES"}
NUMERIC = frozenset({"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8"})
ALL_DATATYPES = NUMERIC | {"BOOL", "BYTES"}
#: which V2 datatypes a column of each MLflow type takes (the values are then checked as /predict checks them)
ACCEPTS = {"double": NUMERIC, "float": NUMERIC, "long": NUMERIC, "integer": NUMERIC, "boolean": {"BOOL"},
           "string": {"BYTES"}, "binary": {"BYTES"}, "datetime": {"BYTES"}}


def model_metadata(spec: GatewaySpec) -> dict[str, Any]:
    def tensor(col, i: int, default_name: str) -> dict[str, Any]:
        name = col.name if col.name is not None else f"{default_name}-{i}"
        if col.type == "tensor":
            ts = getattr(col, "tensor-spec", None) or (col.model_extra or {}).get("tensor-spec") or {}
            return {"name": name, "datatype": NUMPY_DATATYPES.get(str(ts.get("dtype")), "BYTES"),
                    "shape": list(ts.get("shape") or [-1])}
        return {"name": name, "datatype": DATATYPES.get(col.type, "BYTES"), "shape": [-1]}

    return {
        "name": spec.app,
        "versions": [spec.run_id] if spec.run_id else [],
        "platform": "mlflow",
        "inputs": [tensor(c, i, "input") for i, c in enumerate(spec.inputs)],
        "outputs": [tensor(c, i, "output") for i, c in enumerate(spec.outputs or [])],
        "parameters": {"run_id": spec.run_id, "model_id": spec.model_id or "", "model_uri": spec.model_uri or ""},
    }


def _flatten(data: list, expected: int) -> list:
    """Row-major flat values (nested lists allowed, as many clients send them)."""
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list = []
    stack = [iter(data)]
    while stack:  # iterative: no recursion on client data
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
            if len(flat) > expected:
                return flat
        else:
            stack.pop()
    return flat


def _tensor(item: Any, i: int, max_rows: int) -> tuple[str, list[int], str, list]:
    if not isinstance(item, dict):
        raise InputError(422, f"invalid input: inputs[{i}] should be an object with name, shape, datatype, data")
    name, shape, datatype, data = item.get("name"), item.get("shape"), item.get("datatype"), item.get("data")
    if not isinstance(name, str):
        raise InputError(422, f"invalid input: inputs[{i}].name should be a string")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise InputError(422, f"invalid input: inputs[{i}] ({short(name, 60)!r}): shape should be a list of "
                              "non-negative integers, e.g. [2] or [2, 1]")
    if datatype not in ALL_DATATYPES:
        raise InputError(422, f"invalid input: inputs[{i}] ({short(name, 60)!r}): datatype "
                              f"{short(repr(datatype), 40)} is not a V2 datatype ({', '.join(sorted(ALL_DATATYPES))})")
    if not isinstance(data, list):
        raise InputError(422, f"invalid input: inputs[{i}] ({short(name, 60)!r}): data should be a list")
    if shape[0] > max_rows:
        raise InputError(413, f"too many rows: {shape[0]}, at most {max_rows} per request")
    expected = math.prod(shape)
    flat = _flatten(data, expected)
    if len(flat) != expected:
        raise InputError(422, f"invalid input: inputs[{i}] ({short(name, 60)!r}): shape {shape} holds {expected} "
                              f"values, data has {len(flat)}{' or more' if len(flat) > expected else ''}")
    return name, shape, datatype, flat


def read_infer(body: Any, front: Front) -> RawColumns | Inputs:
    """The infer request's inputs as columns (column signatures) or a tensor (tensor signatures)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InputError(422, "invalid input: expected a V2 inference request "
                              "{\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}, ...]}")
    if len(body["inputs"]) > max(len(front.spec.inputs), 1):
        raise InputError(422, f"invalid input: {len(body['inputs'])} input tensors, the model takes "
                              f"{max(len(front.spec.inputs), 1)}")
    parameters = body.get("parameters")
    params = parameters if isinstance(parameters, dict) else None
    tensors = [_tensor(item, i, front.settings.max_rows) for i, item in enumerate(body["inputs"])]
    if front.validator is None:  # a tensor model: one input, reshaped to its shape
        name, shape, _datatype, flat = tensors[0]
        payload = _reshape(flat, shape)
        return front._tensor_inputs({"inputs": payload, **({"params": params} if params else {})})
    types = {n: c.type for n, c in zip(front.spec.column_names, front.spec.inputs)}
    rows = None
    columns: dict[str, list] = {}
    for name, shape, datatype, flat in tensors:
        if name not in types:
            front.shape.check_fields([name], "the input tensors")
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InputError(422, f"invalid input: input {short(name, 60)!r} should have the shape [n] or [n, 1] "
                                  f"(one value per row), got {shape}")
        if datatype not in ACCEPTS.get(types[name], ALL_DATATYPES):
            raise InputError(422, f"invalid input: input {short(name, 60)!r} is {types[name]} in the model signature "
                                  f"(V2 datatype {DATATYPES.get(types[name], 'BYTES')}), got {datatype}",
                             [{"row": None, "field": name, "type": "datatype",
                               "message": f"expected {DATATYPES.get(types[name], 'BYTES')}"}])
        if rows is not None and shape[0] != rows:
            raise InputError(422, f"invalid input: the input tensors have different row counts ({rows}, {shape[0]})")
        rows = shape[0]
        columns[name] = flat
    if not rows:
        raise InputError(422, "invalid input: no records")
    return RawColumns({n: columns.get(n) or [MISSING] * rows for n in front.spec.column_names}, rows, params)


def _reshape(flat: list, shape: list[int]) -> list:
    out: Any = flat
    for size in reversed(shape[1:]):
        out = [out[i:i + size] for i in range(0, len(out), size)] if size else []
    return out


def _datatype(values: list) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def outputs(predictions: list, spec: GatewaySpec) -> list[dict[str, Any]]:
    """The predictions as V2 output tensors: one per column of a table answer, else one."""
    n = len(predictions)
    names = [c.name for c in spec.outputs or [] if c.name]
    if n and all(isinstance(p, dict) for p in predictions):
        keys = list(predictions[0])
        if all(list(p) == keys for p in predictions):
            return [_output(str(k), [p[k] for p in predictions], [n]) for k in keys]
    if n and all(isinstance(p, list) for p in predictions):
        width = len(predictions[0])
        if all(len(p) == width for p in predictions) and not any(isinstance(v, (list, dict)) for p in predictions
                                                                   for v in p):
            return [_output(names[0] if len(names) == 1 else "predictions",
                            [v for p in predictions for v in p], [n, width])]
    if any(isinstance(p, (list, dict)) for p in predictions):  # ragged or nested: each row as JSON text
        return [{"name": "predictions", "datatype": "BYTES", "shape": [n],
                 "parameters": {"content_type": "json"}, "data": [jsonio.dumps(p).decode() for p in predictions]}]
    return [_output(names[0] if len(names) == 1 else "predictions", predictions, [n])]


def _output(name: str, data: list, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": _datatype(data), "shape": shape, "data": data}


def v2_error(status: int, message: str, errors: list | None = None, headers: dict | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["errors"] = errors
    return json_response(body, status, headers)


def add_v2_routes(app: FastAPI, front: Front) -> str:
    """Adds the V2 routes; returns the infer path (for the metrics label)."""
    spec = front.spec
    base = f"/v2/models/{spec.app}"
    metadata = jsonio.dumps(model_metadata(spec))

    def unknown(model: str) -> Response:
        return v2_error(404, f"unknown model {short(model, 60)!r}: this server serves {spec.app!r}")

    @app.get("/v2", summary="V2: server metadata", tags=["Open Inference (V2)"])
    async def server_metadata() -> Response:
        return json_response({"name": "home-mlops", "version": "2", "extensions": []})

    @app.get("/v2/health/live", summary="V2: the server is live", tags=["Open Inference (V2)"])
    async def live() -> Response:
        return json_response({"live": True})

    async def _ready() -> Response:
        ok = await front.backend.ready()
        return json_response({"ready": ok}, 200 if ok else 503)

    app.get("/v2/health/ready", summary="V2: the model can predict", tags=["Open Inference (V2)"])(_ready)

    @app.get("/v2/models/{model}/ready", summary="V2: the model is ready", tags=["Open Inference (V2)"])
    async def model_ready(model: str) -> Response:
        return unknown(model) if model != spec.app else await _ready()

    @app.get("/v2/models/{model}", summary="V2: model metadata (inputs and datatypes from the signature)",
             tags=["Open Inference (V2)"])
    async def model(model: str) -> Response:
        return unknown(model) if model != spec.app else json_response(metadata)

    async def read(request: Request, timing: Timing) -> Inputs:
        with timing.stage("parse"):
            check_content_type(request.headers.get("content-type"))
            body = front.decode(await front.read_body(request))
        with timing.stage("validate"):
            read = read_infer(body, front)
            inputs = read if isinstance(read, Inputs) else front.validated(read)
        request_id = body.get("id") if isinstance(body.get("id"), str) else uuid.uuid4().hex
        wanted = body.get("outputs")
        names = {o.get("name") for o in wanted if isinstance(o, dict)} if isinstance(wanted, list) else set()
        request.state.v2 = (short(request_id, 128), names)
        return inputs

    def refuse(problem: Problem) -> Response:
        return v2_error(problem.status, problem.message, problem.errors, problem.headers)

    async def infer_this_model(request: Request) -> Response:
        def write(predictions: list) -> bytes:
            request_id, names = request.state.v2
            tensors = outputs(predictions, spec)
            return jsonio.dumps({"model_name": spec.app, "model_version": spec.run_id or None, "id": request_id,
                                 "parameters": {},
                                 "outputs": [o for o in tensors if o["name"] in names] or tensors})

        return await front.respond(request, read, write, refuse)

    @app.post("/v2/models/{model}/infer", summary="V2: predict", tags=["Open Inference (V2)"])
    async def infer(model: str, request: Request) -> Response:
        # only another model's name gets here: this model's path is served by the fast route below
        return unknown(model) if model != spec.app else await infer_this_model(request)

    add_fast_route(app, f"{base}/infer", infer_this_model)

    return f"{base}/infer"
