"""Default BentoML service for any pyfunc-capable MLflow model (rendered by home-mlops).

POST /predict {"inputs": [record, ...]} -> [prediction, ...]

Every request is checked by ``PayloadGuard``, an ASGI middleware that runs before
BentoML parses the body and before adaptive batching merges requests, so one
client's bad row never reaches (and fails) a batch holding other clients' rows:

- a Content-Type other than JSON in UTF-8 -> 415; a body over the limit -> 413;
- bytes that are not UTF-8, malformed JSON, JSON nested too deep -> 400 (the depth
  is measured on the bytes, so ``json.loads`` never recurses past the limit);
- more rows than the limit -> 413, counted before anything is built;
- a record that does not fit the MLflow signature (not an object, a missing or
  unknown field, a value of the wrong JSON type) -> 400 naming the row and field;
- a number that is not finite, or outside the column type's range (int64 for
  ``long``, int32 for ``integer``, float32 for ``float``), or a string with an
  unpaired surrogate -> 422 naming the row and field.
Valid requests reach BentoML re-serialized from what was checked (no second
reading of the client's bytes by another parser). A model exception is logged
with its traceback under a request id; the client gets a 500 with that id and the
exception's class name only. A batch that fails is retried row by row, so a row
the model cannot take fails only the request that sent it.
Health (/livez, /readyz) and Prometheus metrics (/metrics) come from BentoML.
"""
from __future__ import annotations

import json
import logging
import math
import os
import uuid
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd

# rawbody.py sits next to this file in the bento (home-mlops copies it there; the image has no
# home_mlops package): the same raw-body checks as the gateway's, one implementation.
from rawbody import BodyRefused, check_content_type, decode_json  # noqa: E402

log = logging.getLogger("home_mlops.service")

CONFIG = json.loads((Path(__file__).parent / "home_mlops_service.json").read_text())
MODEL_TAG = os.environ.get("HOME_MLOPS_MODEL_TAG") or CONFIG["model_tag"]
# MLflow column types -> the numpy dtype the model was trained with.
DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool", "string": "object"}
NUMERIC = {"double", "float", "long", "integer"}
INT_RANGES = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
FLOAT32_MAX = 3.4028234663852886e38

MAX_BODY_BYTES = int(os.environ.get("HOME_MLOPS_MAX_BODY_BYTES") or 1024 * 1024)
MAX_ROWS = int(os.environ.get("HOME_MLOPS_MAX_ROWS") or 10_000)
MAX_DEPTH = int(os.environ.get("HOME_MLOPS_MAX_DEPTH") or 32)
#: marks a row the model failed on, in the batch's answer; PayloadGuard turns it into a 500
FAILURE_KEY = "__home_mlops_model_failure__"


class Refused(BodyRefused):
    """A request refused before it reaches BentoML: HTTP status, message, where."""

    def __init__(self, status: int, message: str, row: int | None = None, field: str | None = None):
        super().__init__(status, message)
        self.row, self.field = row, field

    def body(self) -> dict[str, Any]:
        where = {k: v for k, v in (("row", self.row), ("field", self.field)) if v is not None}
        return {"error": self.message, **where}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- the records


def check_value(column: dict[str, Any], value: Any, row: int) -> None:
    """Refuse a value the model's cast to the column's dtype would fail on or silently change."""
    name, kind = column["name"], column["type"]
    if value is None:
        if column.get("required", True):
            raise Refused(400, f"row {row}: field {_short(name)} must not be null", row, name)
        return
    if kind in NUMERIC:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Refused(400, f"row {row}: field {_short(name)} must be a number, got {_short(value, 40)}", row, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise Refused(422, f"row {row}: field {_short(name)} must be a finite number, got {value}", row, name)
        if kind in INT_RANGES:
            if isinstance(value, float) and not value.is_integer():
                raise Refused(400, f"row {row}: field {_short(name)} must be an integer, got {value}", row, name)
            low, high = INT_RANGES[kind]
            if not low <= value <= high:
                raise Refused(422, f"row {row}: field {_short(name)} is out of range for {kind} "
                                   f"({low}..{high})", row, name)
        elif abs(value) > (FLOAT32_MAX if kind == "float" else 1.7976931348623157e308):
            raise Refused(422, f"row {row}: field {_short(name)} is out of range for {kind}", row, name)
    elif kind == "boolean" and not isinstance(value, bool):
        raise Refused(400, f"row {row}: field {_short(name)} must be true or false, got {_short(value, 40)}", row, name)
    elif kind == "string":
        if not isinstance(value, str):
            raise Refused(400, f"row {row}: field {_short(name)} must be a string, got {_short(value, 40)}", row, name)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused(422, f"row {row}: field {_short(name)} holds an unpaired surrogate escape", row, name) from None


def check_records(records: list[Any], columns: list[dict[str, Any]]) -> None:
    known = {c["name"] for c in columns}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise Refused(400, f"row {index}: expected an object with the fields {sorted(known)}", index)
        if len(record) > len(columns):  # 10 000 junk keys: refused before any of them is looked at
            _refuse_unknown(record, known, index)
        for column in columns:
            if column["name"] not in record:
                if column.get("required", True):
                    raise Refused(400, f"row {index}: missing field {column['name']!r}", index, column["name"])
                continue
            check_value(column, record[column["name"]], index)
        if not record.keys() <= known:
            _refuse_unknown(record, known, index)


def _refuse_unknown(record: dict[str, Any], known: set[str], index: int) -> None:
    unknown = [k for k in record if k not in known]
    more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
    raise Refused(400, f"row {index}: unknown field(s) {', '.join(_short(k) for k in unknown[:5])}{more}",
                  index, str(unknown[0])[:100])


def check_tensor(inputs: list[Any], columns: list[dict[str, Any]]) -> None:
    try:
        array = np.asarray(inputs)
    except ValueError:
        raise Refused(400, "the inputs are not a rectangular tensor (rows of different shapes)") from None
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise Refused(422, "the inputs hold a number that is not finite (NaN or Infinity)")
    shape = ((columns[0].get("tensor-spec") or {}).get("shape") if len(columns) == 1 else None) or []
    expected = list(shape[1:])
    if expected and (len(expected) != array.ndim - 1 or any(d not in (-1, n) for d, n in zip(expected, array.shape[1:]))):
        raise Refused(400, f"each input should have the shape {expected} (-1: any), got {list(array.shape[1:])}")


def validate(payload: Any, columns: list[dict[str, Any]], column_based: bool) -> list[Any]:
    """The request's rows, checked against the signature; Refused otherwise."""
    if not isinstance(payload, dict) or "inputs" not in payload or len(payload) != 1:
        raise Refused(400, 'expected a JSON object {"inputs": [record, ...]}')
    inputs = payload["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise Refused(400, '"inputs" should be a non-empty list of records')
    if len(inputs) > MAX_ROWS:
        raise Refused(413, f"too many rows: {len(inputs)}, at most {MAX_ROWS} per request")
    if column_based:
        check_records(inputs, columns)
    elif columns:
        check_tensor(inputs, columns)
    return inputs


# --------------------------------------------------------------------------- the middleware


async def _respond(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def _read_body(receive: Any, headers: dict[bytes, bytes]) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise Refused(413 if declared.isdigit() else 400, f"request body too large: over {MAX_BODY_BYTES} bytes"
                      if declared.isdigit() else "bad Content-Length header")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, f"request body too large: over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class PayloadGuard:
    """Checks POST /predict bodies before BentoML reads them (see the module docstring)."""

    def __init__(self, app: Any, columns: list[dict[str, Any]], column_based: bool):
        self.app, self.columns, self.column_based = app, columns, column_based

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        try:
            check_content_type(headers.get(b"content-type", b"").decode("latin-1"))
            payload = decode_json(await _read_body(receive, headers), MAX_DEPTH)
            inputs = validate(payload, self.columns, self.column_based)
        except Refused as exc:
            await _respond(send, exc.status, exc.body())
            return
        except BodyRefused as exc:
            await _respond(send, exc.status, {"error": exc.message})
            return
        body = json.dumps({"inputs": inputs}, allow_nan=False).encode()
        replaced = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"transfer-encoding")]
        scope = dict(scope, headers=[*replaced, (b"content-length", str(len(body)).encode())])
        delivered = False

        async def replay() -> Any:
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: wait for the disconnect, as the server would
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, _FailureAnswer(send))


class _FailureAnswer:
    """Wraps ``send``: an answer holding a failed row becomes a 500 with its request id, nothing else."""

    def __init__(self, send: Any):
        self.send, self.start, self.chunks = send, None, []

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.chunks)
        failures = _failures(body) if self.start["status"] == 200 and FAILURE_KEY.encode() in body else []
        if failures:
            await _respond(self.send, 500, {"error": "the model failed on this input; the server log has the "
                                                     "detail under request_id", **failures[0]})
            return
        await self.send(self.start)
        await self.send({"type": "http.response.body", "body": body})


def _failures(body: bytes) -> list[dict[str, Any]]:
    answers = json.loads(body)
    if not isinstance(answers, list):
        return []
    return [a[FAILURE_KEY] for a in answers if isinstance(a, dict) and isinstance(a.get(FAILURE_KEY), dict)]


# --------------------------------------------------------------------------- the service


def _to_json(value: Any) -> list[Any]:
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records") if value.shape[1] > 1 else value.iloc[:, 0].tolist()
    if isinstance(value, pd.Series):
        return value.tolist()
    return np.asarray(value).tolist()


COLUMNS = [c for c in CONFIG.get("inputs") or [] if isinstance(c, dict)]
COLUMN_BASED = bool(COLUMNS) and all("name" in c for c in COLUMNS)


@bentoml.service(name=CONFIG["service_name"], traffic={"timeout": 60})
class ModelService:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.model = bentoml.mlflow.load_model(self.model_ref)
        self.columns = COLUMNS
        self.column_based = COLUMN_BASED

    def _predict(self, inputs: list[Any]) -> list[Any]:
        if self.column_based:
            frame = pd.DataFrame.from_records(inputs, columns=[c["name"] for c in self.columns])
            frame = frame.astype({c["name"]: DTYPES[c["type"]] for c in self.columns if c["type"] in DTYPES})
            data: Any = frame
        else:
            data = np.asarray(inputs)
        return _to_json(self.model.predict(data))

    # Adaptive batching. max_latency_ms is the deadline after which BentoML sheds a request
    # with 503: a tight value (20 ms was tried) rejects most requests under concurrent load.
    # Every row here passed PayloadGuard; a batch the model still fails on is retried row by
    # row, and only the failing rows are marked (one request's row never fails another's).
    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=128, max_latency_ms=10_000)
    def predict(self, inputs: list[Any]) -> list[Any]:
        try:
            return self._predict(inputs)
        except Exception as exc:  # noqa: BLE001 - a model failure: find the rows it belongs to
            if len(inputs) == 1:
                return [_failure(exc)]
            log.warning("the model failed on a batch of %d rows (%s); retrying them one by one",
                        len(inputs), type(exc).__name__)
        answers: list[Any] = []
        for row in inputs:
            try:
                answers.extend(self._predict([row]))
            except Exception as exc:  # noqa: BLE001
                answers.append(_failure(exc))
        return answers


def _failure(exc: BaseException) -> dict[str, Any]:
    request_id = uuid.uuid4().hex[:16]
    log.error("model failure (request id %s)", request_id, exc_info=exc)
    return {FAILURE_KEY: {"request_id": request_id, "error_class": type(exc).__name__}}


ModelService.add_asgi_middleware(PayloadGuard, columns=COLUMNS, column_based=COLUMN_BASED)
