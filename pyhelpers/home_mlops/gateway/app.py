"""The FastAPI gateway in front of the BentoML model server.

Copied into the gateway image on its own: imports only the standard library,
fastapi/starlette, pydantic, httpx and prometheus_client, plus ``.spec``.

``POST /predict`` accepts MLflow's scoring JSON (``dataframe_records``,
``dataframe_split``, ``instances``, ``inputs``) or a single flat record,
validates every record against the model signature, and forwards
``{"inputs": [record, ...]}`` to the model server's ``POST /predict``.

Hostile bodies are refused before they cost anything (issue 9): a Content-Type
other than JSON is a 415, a body over the limit a 413, bytes that are not UTF-8
or JSON nested deeper than the limit a 400 (the depth is measured on the text,
before ``json.loads`` could recurse), the row and column counts are checked
before any record is built, and a non-finite number or an integer outside the
signature type's range is a 422 naming the field. An error inside the gateway
answers with a request id and a class name; the detail goes to the log only.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sys
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime
from typing import Any, Optional

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import PydanticSerializationError

from .rawbody import JSON, BodyRefused, check_content_type, decode_json
from .spec import GatewaySpec

log = logging.getLogger("home_mlops.gateway")

# httpcore tries `import sniffio` on every request (twice); anyio 4 no longer
# installs it, and a failing import searches sys.path each time (~0.4 ms). A
# None entry in sys.modules makes that import fail at once.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

ENV_UPSTREAM_URL = "HOME_MLOPS_UPSTREAM_URL"
ENV_UPSTREAM_TIMEOUT = "HOME_MLOPS_UPSTREAM_TIMEOUT"
ENV_UPSTREAM_CONNECT_TIMEOUT = "HOME_MLOPS_UPSTREAM_CONNECT_TIMEOUT"
ENV_UPSTREAM_MAX_CONNECTIONS = "HOME_MLOPS_UPSTREAM_MAX_CONNECTIONS"
ENV_UPSTREAM_KEEPALIVE = "HOME_MLOPS_UPSTREAM_KEEPALIVE_SECONDS"
ENV_MAX_BODY_BYTES = "HOME_MLOPS_MAX_BODY_BYTES"
ENV_MAX_ROWS = "HOME_MLOPS_MAX_ROWS"
ENV_READY_TIMEOUT = "HOME_MLOPS_READY_TIMEOUT"
ENV_MAX_DEPTH = "HOME_MLOPS_MAX_DEPTH"
#: set by the deployer on each gateway container; echoed on every response (contract 5)
ENV_DEPLOY_ID = "HOME_MLOPS_DEPLOY_ID"
DEPLOY_ID_HEADER = "X-Home-Mlops-Deploy-Id"

DEFAULT_UPSTREAM_URL = "http://127.0.0.1:3000"
_ENVELOPES = ("dataframe_records", "dataframe_split", "instances", "inputs")
_MAX_ERRORS = 20
_KNOWN_PATHS = frozenset({"/predict", "/healthz", "/readyz", "/metrics", "/", "/docs", "/openapi.json", "/redoc"})


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


def _env_deploy_id() -> str | None:
    raw = os.environ.get(ENV_DEPLOY_ID, "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", raw):  # it goes into a response header as is
        raise ValueError(f"{ENV_DEPLOY_ID}={raw[:40]!r} should be 1-128 letters, digits, '.', '_', ':' or '-'")
    return raw


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class Settings:
    """Runtime knobs, read from the environment (see the ENV_* names)."""

    upstream_url: str = DEFAULT_UPSTREAM_URL
    timeout: float = 10.0
    connect_timeout: float = 2.0
    ready_timeout: float = 2.0
    max_body_bytes: int = 1024 * 1024
    max_rows: int = 10_000
    #: how deep JSON may nest; the deepest MLflow envelope needs 3 ({"dataframe_split": {"data": [[...]]}})
    max_depth: int = 32
    deploy_id: str | None = None
    max_connections: int = 100
    keepalive_seconds: float = 4.0  # below uvicorn's default 5 s keep-alive upstream

    @classmethod
    def from_env(cls, upstream_url: str | None = None) -> "Settings":
        timeout = _env_float(ENV_UPSTREAM_TIMEOUT, 10.0)
        return cls(
            upstream_url=(upstream_url or os.environ.get(ENV_UPSTREAM_URL) or DEFAULT_UPSTREAM_URL).rstrip("/"),
            timeout=timeout,
            connect_timeout=_env_float(ENV_UPSTREAM_CONNECT_TIMEOUT, min(timeout, 2.0)),
            ready_timeout=_env_float(ENV_READY_TIMEOUT, min(timeout, 2.0)),
            max_body_bytes=_env_int(ENV_MAX_BODY_BYTES, 1024 * 1024),
            max_rows=_env_int(ENV_MAX_ROWS, 10_000),
            max_depth=_env_int(ENV_MAX_DEPTH, 32),
            deploy_id=_env_deploy_id(),
            max_connections=_env_int(ENV_UPSTREAM_MAX_CONNECTIONS, 100),
            keepalive_seconds=_env_float(ENV_UPSTREAM_KEEPALIVE, 4.0),
        )


# --------------------------------------------------------------------------- validation

_PY_TYPES: dict[str, Any] = {
    "double": float,
    "float": float,
    "long": int,
    "integer": int,
    "boolean": bool,
    "string": str,
    "binary": str,  # base64 text in JSON, as MLflow's scoring server expects
}

_FLOAT32_MAX = 3.4028234663852886e38
#: what a value must satisfy to survive the cast to the column's numpy dtype in the model
#: server (int64, int32, float32) and to be finite there: pydantic Field constraints
_TYPE_BOUNDS: dict[str, dict[str, Any]] = {
    "double": {"allow_inf_nan": False},
    "float": {"allow_inf_nan": False, "ge": -_FLOAT32_MAX, "le": _FLOAT32_MAX},
    "long": {"ge": -(2**63), "le": 2**63 - 1},
    "integer": {"ge": -(2**31), "le": 2**31 - 1},
}


class InputError(Exception):
    """A request the gateway refuses: status code, short message, optional details."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors

    def response(self) -> Response:
        body: dict[str, Any] = {"detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        return _json_response(body, self.status)


def build_record_model(spec: GatewaySpec) -> type[BaseModel]:
    """A strict pydantic model for one record of the signature (aliases = column names)."""
    fields: dict[str, Any] = {}
    for i, col in enumerate(spec.inputs):
        name = col.name if col.name is not None else str(i)
        if col.type == "datetime":
            py: Any = datetime
            extra: dict[str, Any] = {"strict": False}  # ISO strings from JSON
        else:
            py = _PY_TYPES.get(col.type, Any)
            extra = dict(_TYPE_BOUNDS.get(col.type, {}))
        info = {"alias": name, "title": name, "description": f"MLflow type: {col.type}", **extra}
        if col.required:
            fields[f"f{i}"] = (py, Field(**info))
        else:
            fields[f"f{i}"] = (Optional[py], Field(default=None, **info))
    config = ConfigDict(strict=True, extra="forbid", ser_json_inf_nan="constants", title="Record")
    return create_model("Record", __config__=config, **fields)


def _error_list(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:_MAX_ERRORS]:
        loc = err.get("loc", ())
        row = loc[0] if loc and isinstance(loc[0], int) else None
        field = _short(".".join(str(x) for x in loc[1:]), 100) if len(loc) > 1 else None
        out.append({"row": row, "field": field, "type": err.get("type"), "message": err.get("msg")})
    return out


def _summary(errors: list[dict[str, Any]], total: int) -> str:
    first = errors[0]
    where = f"row {first['row']}" if first["row"] is not None else "input"
    if first["field"]:
        where += f", field {first['field']!r}"
    more = f" (and {total - 1} more)" if total > 1 else ""
    return f"invalid input: {where}: {first['message']}{more}"


@dataclass(frozen=True)
class Shape:
    """What a request may hold: the signature's column names and the row limit."""

    names: list[str]
    max_rows: int

    def check_row_count(self, count: int) -> None:
        if count > self.max_rows:
            raise InputError(413, f"too many rows: {count}, at most {self.max_rows} per request")

    def check_fields(self, fields: Any, where: str, row: int | None = None) -> None:
        """Refuse unknown fields before a row is built from them (10 000 junk keys cost one set lookup each)."""
        unknown = [k for k in fields if k not in self.known]
        if unknown:
            shown = ", ".join(_short(repr(k), 60) for k in unknown[:5])
            more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
            raise InputError(
                422,
                f"invalid input: {where}: unknown field(s) {shown}{more}; the model takes {', '.join(self.names)}",
                [{"row": row, "field": _short(str(unknown[0]), 100), "type": "extra_forbidden",
                  "message": "Extra inputs are not permitted"}],
            )

    @cached_property
    def known(self) -> frozenset[str]:
        return frozenset(self.names)


def refuse_wide_records(rows: list[Any], names: list[str]) -> None:
    """A short 422 for a record with more fields than the signature (10 000 junk keys), instead of
    one validation error per key. Called only once validation failed: the happy path pays nothing."""
    shape = Shape(names, len(rows))
    for i, row in enumerate(rows):
        if isinstance(row, dict) and len(row) > len(names):
            shape.check_fields(row, f"row {i}", i)


def _rows_from_list(value: list[Any], names: list[str], key: str, shape: Shape) -> list[Any]:
    shape.check_row_count(len(value))
    rows: list[Any] = []
    n = len(names)
    for i, item in enumerate(value):
        if isinstance(item, list):
            if len(item) != n:
                raise InputError(
                    422,
                    f"invalid input: row {i} has {len(item)} values, expected {n} ({', '.join(names)})",
                    [{"row": i, "field": None, "type": "row_length", "message": f"expected {n} values"}],
                )
            rows.append(dict(zip(names, item)))
        else:
            rows.append(item)  # a record, or junk the validator will name
    return rows


def _rows_from_value(value: Any, key: str, shape: Shape) -> list[Any]:
    if isinstance(value, list):
        return _rows_from_list(value, shape.names, key, shape)
    if isinstance(value, dict):
        values = list(value.values())
        if values and all(isinstance(v, list) for v in values):  # a dict of columns
            shape.check_fields(value, f"the columns under {key!r}")
            lengths = {len(v) for v in values}
            if len(lengths) != 1:
                raise InputError(422, f"invalid input: the columns under {key!r} have different lengths")
            count = lengths.pop()
            shape.check_row_count(count)
            return [{k: value[k][i] for k in value} for i in range(count)]
        return [value]
    raise InputError(422, f"invalid input: {key!r} should be a list of records or rows")


def _rows_from_split(value: Any, shape: Shape) -> list[Any]:
    if not isinstance(value, dict) or not isinstance(value.get("data"), list):
        raise InputError(422, "invalid input: 'dataframe_split' should be {\"columns\": [...], \"data\": [[...]]}")
    columns = value.get("columns") or shape.names
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InputError(422, "invalid input: 'dataframe_split.columns' should be a list of column names")
    shape.check_fields(columns, "'dataframe_split.columns'")
    return _rows_from_list(value["data"], columns, "dataframe_split", shape)


def extract_rows(payload: Any, names: list[str], max_rows: int = 10_000) -> list[Any]:
    """The request's records, whatever MLflow scoring format it used.

    Counts are checked before rows are built, so a 1 MiB body of columns cannot
    make half a million dicts only to be refused afterwards.
    """
    return _extract(payload, Shape(names, max_rows))


def _extract(payload: Any, shape: Shape) -> list[Any]:
    names = shape.names
    if isinstance(payload, dict):
        keys = [k for k in _ENVELOPES if k in payload]
        if keys and not (set(payload) & set(names)):
            key = keys[0]
            others = [k for k in payload if k != key]
            if others:
                shown = ", ".join(_short(repr(k), 60) for k in others[:5])
                raise InputError(422, f"invalid input: unexpected top-level keys next to {key!r}: {shown}")
            if key == "dataframe_split":
                return _rows_from_split(payload[key], shape)
            return _rows_from_value(payload[key], key, shape)
        if names and not (set(payload) & set(names)):
            raise InputError(
                422,
                "invalid input: expected one of dataframe_records, dataframe_split, instances, inputs, "
                f"or a record with the fields {', '.join(names)}",
            )
        return [payload]
    if isinstance(payload, list):
        return _rows_from_list(payload, names, "body", shape)
    raise InputError(422, "invalid input: the body should be a JSON object or a list of records")


def _tensor_payload(payload: Any) -> Any:
    if isinstance(payload, dict):
        for key in ("inputs", "instances"):
            if key in payload and len(payload) == 1:
                return payload[key]
    return payload


# --------------------------------------------------------------------------- metrics


class Metrics:
    def __init__(self, spec: GatewaySpec):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests", "HTTP requests answered by the gateway",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds", "Time to answer a request, in seconds",
            ["endpoint", "status"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_duration_seconds", "Time the model server took to answer /predict",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Failed calls to the model server",
            ["kind"], registry=self.registry,
        )
        self.rows = Counter("gateway_predicted_rows", "Rows sent to the model server", registry=self.registry)
        info = Gauge(
            "gateway_model_info", "The deployed model", ["app", "run_id", "model_id"],
            registry=self.registry, multiprocess_mode="max",
        )
        info.labels(spec.app, spec.run_id, spec.model_id or "").set(1)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request (a plain ASGI middleware: cheap)."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in _KNOWN_PATHS else "other"
            code = str(status)
            self.metrics.requests.labels(endpoint, scope.get("method", ""), code).inc()
            self.metrics.latency.labels(endpoint, code).observe(time.perf_counter() - start)


class DeployIdMiddleware:
    """Adds X-Home-Mlops-Deploy-Id to every response, so the deployer can tell which gateway answered."""

    def __init__(self, app: Any, deploy_id: str):
        self.app = app
        self.header = (DEPLOY_ID_HEADER.lower().encode("latin-1"), deploy_id.encode("latin-1"))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        await self.app(scope, receive, send_with_id)


# --------------------------------------------------------------------------- app


def _json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")).encode(), status_code=status, media_type=JSON)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _upstream_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return _short(resp.text or resp.reason_phrase)
    if isinstance(body, dict):
        for key in ("error", "detail", "message", "msg"):
            if key in body:
                value = body[key]
                return _short(value if isinstance(value, str) else json.dumps(value))
    return _short(json.dumps(body))


def _upstream_failure_ids(resp: httpx.Response) -> dict[str, str]:
    """The model server's request id and error class for a model failure (its log holds the detail)."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    ids = {}
    if isinstance(body, dict):
        ids = {k: _short(str(body[k]), 64) for k in ("request_id", "error_class") if isinstance(body.get(k), str)}
    if "request_id" not in ids and resp.headers.get("x-bentoml-request-id"):
        ids["request_id"] = _short(resp.headers["x-bentoml-request-id"], 64)
    return ids


def _example_value(col_type: str) -> Any:
    return {"double": 0.0, "float": 0.0, "long": 0, "integer": 0, "boolean": False,
            "string": "string", "binary": "", "datetime": "2024-01-01T00:00:00"}.get(col_type)


def _openapi_request_body(spec: GatewaySpec, record_model: type[BaseModel] | None) -> dict[str, Any]:
    names = spec.column_names
    if record_model is None:
        any_schema: dict[str, Any] = {"description": "passed to the model server as {\"inputs\": ...}"}
        content: dict[str, Any] = {"schema": {"anyOf": [
            {"type": "object", "title": "inputs", "properties": {"inputs": any_schema}, "required": ["inputs"]},
            {"type": "object", "title": "instances", "properties": {"instances": any_schema}, "required": ["instances"]},
        ]}}
        if spec.raw_input_example is not None:
            content["example"] = {"inputs": spec.raw_input_example}
        return {"required": True, "content": {JSON: content}}

    record = record_model.model_json_schema(by_alias=True)
    record.pop("title", None)
    record["title"] = "Record"
    examples = spec.input_example or [{c.name or str(i): _example_value(c.type) for i, c in enumerate(spec.inputs)}]
    record["examples"] = examples[:1]
    row = {"type": "array", "description": f"values in column order: {', '.join(names)}"}
    records_or_rows = {"type": "array", "items": {"anyOf": [record, row]}}

    def envelope(key: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "title": key, "properties": {key: schema}, "required": [key],
                "additionalProperties": False}

    schema = {"anyOf": [
        envelope("dataframe_records", {"type": "array", "items": record}),
        envelope("dataframe_split", {
            "type": "object", "required": ["data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}, "default": names},
                "data": {"type": "array", "items": row},
            },
        }),
        envelope("instances", records_or_rows),
        envelope("inputs", records_or_rows),
        record,
    ]}
    media_examples = {
        "dataframe_records": {"summary": "the model's input example as records",
                              "value": {"dataframe_records": examples}},
        "dataframe_split": {"summary": "columns + rows", "value": {"dataframe_split": {
            "columns": names, "data": [[r.get(n) for n in names] for r in examples]}}},
        "inputs": {"summary": "rows in column order", "value": {"inputs": [[r.get(n) for n in names] for r in examples]}},
        "record": {"summary": "a single flat record", "value": examples[0]},
    }
    return {"required": True, "content": {JSON: {"schema": schema, "examples": media_examples}}}


_ERROR_SCHEMA = {"type": "object", "properties": {
    "detail": {"type": "string"},
    "errors": {"type": "array", "items": {"type": "object", "properties": {
        "row": {"type": ["integer", "null"]}, "field": {"type": ["string", "null"]},
        "type": {"type": "string"}, "message": {"type": "string"}}}},
}}


def _responses() -> dict[int | str, dict[str, Any]]:
    err = {"content": {JSON: {"schema": _ERROR_SCHEMA}}}
    return {
        200: {"description": "the model's predictions, one per record",
              "content": {JSON: {"schema": {"type": "object", "properties": {
                  "predictions": {"type": "array", "items": {}}}, "required": ["predictions"]}}}},
        400: {"description": "malformed JSON, not UTF-8, or nested too deep", **err},
        413: {"description": "body or row count over the limit", **err},
        415: {"description": "the body is not declared as application/json (UTF-8)", **err},
        422: {"description": "a record does not match the model signature", **err},
        502: {"description": "the model server is unreachable or failed", **err},
        504: {"description": "the model server did not answer in time", **err},
    }


def create_app(spec: GatewaySpec, upstream_url: str | None = None) -> FastAPI:
    """The gateway app for ``spec``, forwarding to ``upstream_url`` (else the env, else :3000)."""
    settings = Settings.from_env(upstream_url)
    predict_url = settings.upstream_url + "/predict"
    ready_url = settings.upstream_url + "/readyz"
    record_model = build_record_model(spec) if spec.input_kind == "columns" else None
    adapter = TypeAdapter(list[record_model]) if record_model is not None else None  # type: ignore[valid-type]
    names = spec.column_names
    metrics = Metrics(spec)

    def make_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
                keepalive_expiry=settings.keepalive_seconds,
            ),
            trust_env=False,  # an internal hop: no proxies from the environment
            follow_redirects=False,
        )

    state: dict[str, httpx.AsyncClient | None] = {"client": None}

    def client() -> httpx.AsyncClient:
        c = state["client"]
        if c is None or c.is_closed:  # no lifespan (e.g. ASGITransport in tests)
            c = state["client"] = make_client()
        return c

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        state["client"] = make_client()
        try:
            yield
        finally:
            c, state["client"] = state["client"], None
            if c is not None:
                await c.aclose()

    app = FastAPI(
        title=spec.display_title(),
        version=(spec.run_id[:12] or "0"),
        description=(
            f"Gateway for app `{spec.app}`: experiment {spec.experiment_id or '?'}, run {spec.run_id or '?'}, "
            f"model {spec.model_id or '?'}. `POST /predict` takes MLflow scoring JSON."
        ),
        lifespan=lifespan,
    )
    app.state.spec = spec
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.record_model = record_model
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.deploy_id:
        app.add_middleware(DeployIdMiddleware, deploy_id=settings.deploy_id)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        # never a traceback or a path to the client: the detail is in the log under this id
        request_id = uuid.uuid4().hex[:16]
        log.error("unexpected error (request id %s)", request_id, exc_info=exc)
        resp = _json_response({"detail": "internal error in the gateway", "request_id": request_id,
                               "error_class": type(exc).__name__}, 500)
        if settings.deploy_id:  # Starlette answers this one outside every middleware
            resp.headers[DEPLOY_ID_HEADER] = settings.deploy_id
        return resp

    async def read_body(request: Request) -> bytes:
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                raise InputError(400, "bad Content-Length header") from None
            if too_big:
                raise InputError(413, f"request body too large: over {limit} bytes")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise InputError(413, f"request body too large: over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def prepare(payload: Any) -> tuple[bytes, int]:
        """The upstream body and the number of rows in it."""
        if adapter is None:
            inner = _tensor_payload(payload)
            count = len(inner) if isinstance(inner, list) else 1
            if count > settings.max_rows:
                raise InputError(413, f"too many rows: {count}, at most {settings.max_rows} per request")
            try:
                return json.dumps({"inputs": inner}, separators=(",", ":"), allow_nan=False).encode(), count
            except ValueError:  # NaN / Infinity literals, or a number too big for a float (1e999)
                raise InputError(422, "invalid input: a number is not finite (NaN or Infinity); "
                                      "JSON numbers must be finite") from None
        rows = extract_rows(payload, names, settings.max_rows)
        if not rows:
            raise InputError(422, "invalid input: no records")
        if len(rows) > settings.max_rows:
            raise InputError(413, f"too many rows: {len(rows)}, at most {settings.max_rows} per request")
        try:
            records = adapter.validate_python(rows)
        except ValidationError as exc:
            refuse_wide_records(rows, names)
            errors = _error_list(exc)
            raise InputError(422, _summary(errors, exc.error_count()), errors) from None
        try:
            return b'{"inputs":' + adapter.dump_json(records, by_alias=True) + b"}", len(rows)
        except PydanticSerializationError:  # a lone surrogate ("\\ud800") cannot be encoded as UTF-8
            raise InputError(422, "invalid input: a string holds an unpaired UTF-16 surrogate escape "
                                  "(\\ud800-\\udfff); send valid Unicode text") from None

    async def call_upstream(body: bytes) -> httpx.Response:
        c = client()
        headers = {"content-type": JSON, "accept": JSON}
        try:
            return await c.post(predict_url, content=body, headers=headers)
        except httpx.RemoteProtocolError:
            # a pooled keep-alive connection the model server had just closed: retry once
            # (prediction is a pure function, so this is safe)
            return await c.post(predict_url, content=body, headers=headers)

    @app.post(
        "/predict",
        summary="Predict with the deployed model",
        openapi_extra={"requestBody": _openapi_request_body(spec, record_model)},
        responses=_responses(),
    )
    async def predict(request: Request) -> Response:
        try:
            check_content_type(request.headers.get("content-type"))
            payload = decode_json(await read_body(request), settings.max_depth)
            body, count = prepare(payload)
        except BodyRefused as exc:
            return InputError(exc.status, exc.message).response()
        except InputError as exc:
            return exc.response()

        start = time.perf_counter()
        try:
            resp = await call_upstream(body)
        except httpx.TimeoutException:
            metrics.upstream_errors.labels("timeout").inc()
            return _json_response({"detail": f"the model server did not answer within {settings.timeout:g} s"}, 504)
        except httpx.TransportError as exc:
            metrics.upstream_errors.labels("connect").inc()
            return _json_response(
                {"detail": f"the model server is unreachable ({type(exc).__name__})"}, 502)
        finally:
            metrics.upstream_latency.observe(time.perf_counter() - start)

        status = resp.status_code
        if status >= 500:
            metrics.upstream_errors.labels("http_5xx").inc()
            failure = {"detail": f"the model server failed (HTTP {status}): {_upstream_message(resp)}"}
            failure.update(_upstream_failure_ids(resp))
            return _json_response(failure, 502)
        if status >= 400:
            metrics.upstream_errors.labels("http_4xx").inc()
            return _json_response(
                {"detail": f"the model server rejected the input (HTTP {status}): {_upstream_message(resp)}",
                 "upstream_status": status}, status)
        metrics.rows.inc(count)
        content = resp.content.strip()
        if content[:1] == b"[":  # the usual case: a JSON list, passed through without re-parsing
            return Response(b'{"predictions":' + content + b"}", media_type=JSON)
        try:
            result = json.loads(content)
        except ValueError:
            metrics.upstream_errors.labels("bad_answer").inc()
            return _json_response({"detail": "the model server answered with something that is not JSON"}, 502)
        if isinstance(result, dict) and "predictions" in result:
            result = result["predictions"]
        return _json_response({"predictions": result})

    @app.get("/healthz", summary="The gateway process is up")
    async def healthz() -> Response:
        return _json_response({"status": "ok"})

    @app.get("/readyz", summary="The model server answers its readiness probe")
    async def readyz() -> Response:
        try:
            resp = await client().get(ready_url, timeout=settings.ready_timeout)
        except httpx.HTTPError as exc:
            return _json_response({"status": "not ready", "detail": f"model server unreachable ({type(exc).__name__})"}, 503)
        if resp.status_code != 200:
            return _json_response({"status": "not ready", "detail": f"model server /readyz answered {resp.status_code}"}, 503)
        return _json_response({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", summary="What is deployed")
    async def root() -> Response:
        return _json_response({
            "app": spec.app,
            "experiment_id": spec.experiment_id,
            "run_id": spec.run_id,
            "model_id": spec.model_id,
            "model_uri": spec.model_uri,
        })

    return app
