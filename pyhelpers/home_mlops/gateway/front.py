"""What every route of the front door shares: read a body safely, make it ``Inputs``, predict with admission.

A route says how its protocol looks on the wire (``/predict``, ``/invocations``,
V2); ``Front`` does the rest the same way for all of them:

1. ``read_body``: the size limit before and while reading (413), never more bytes;
2. ``decode``: UTF-8 and the nesting limit checked on the bytes, then parsed (400);
3. ``inputs``: the envelope read into columns, counts and field names checked before
   anything is built, the values checked against the signature (413 / 422);
4. ``predict``: a prediction slot (quick 503 + Retry-After when overloaded), the
   backend, the failure counted by kind.
Each step is timed into the request's ``Timing`` (Server-Timing, /metrics).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import jsonio
from .backend import Backend, BackendError, Inputs, Timing
from .columns import ColumnValidator
from .envelope import RawColumns, Shape, read_columns
from .errors import InputError
from .metrics import TIMING, Metrics
from .overload import Admission
from .rawbody import JSON, BodyRefused, decode_json
from .settings import Settings
from .spec import GatewaySpec


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if isinstance(body, bytes):
        content = body
    else:
        try:
            content = jsonio.dumps(body)
        except jsonio.NotSerializable:  # a client's lone surrogate echoed in an error (a field name): \ud800
            content = json.dumps(body, separators=(",", ":"), default=str).encode()
    return Response(content, status_code=status, media_type=JSON, headers=headers)


def timing_of(request: Request) -> Timing:
    state = request.scope.setdefault("state", {})
    timing = state.get(TIMING)
    if timing is None:  # an app mounted without the middleware (a per-app extension)
        timing = state[TIMING] = Timing()
    return timing


def add_fast_route(app: Any, path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
    """Serve ``POST path`` with a plain Starlette route, ahead of the FastAPI route of the same path.

    The FastAPI route stays for the OpenAPI document (/docs) and never runs: a predicting
    endpoint takes the raw Request, so FastAPI's per-request dependency solving and
    parameter parsing would cost time and do nothing.
    """
    app.router.routes.insert(0, Route(path, endpoint, methods=["POST"], include_in_schema=False))


@dataclass(frozen=True)
class Problem:
    """Why a request got no predictions, for a protocol to render in its own error shape."""

    status: int
    message: str
    errors: list[dict[str, Any]] | None = None
    #: what the backend adds (request_id, error_class, upstream_status)
    extra: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] | None = None

    @classmethod
    def of(cls, exc: Exception) -> "Problem":
        if isinstance(exc, BodyRefused):
            return cls(exc.status, exc.message)
        if isinstance(exc, InputError):
            return cls(exc.status, exc.detail, exc.errors)
        if isinstance(exc, BackendError):
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
            return cls(exc.status, exc.detail, extra=exc.extra, headers=headers)
        return cls(502, f"the model's answer cannot be written as JSON ({exc})")


#: what a route reads its request into, and how it writes the predictions and a Problem
ReadInputs = Callable[[Request, Timing], Awaitable[Inputs]]


@dataclass
class Front:
    spec: GatewaySpec
    settings: Settings
    metrics: Metrics
    backend: Backend
    admission: Admission
    #: None for a tensor-based or signature-less model (passed through, counted and checked for NaN only)
    validator: ColumnValidator | None

    def __post_init__(self) -> None:
        names = self.spec.column_names
        self.shape = Shape(names, self.settings.max_rows, allow_params=bool(self.spec.params))
        # /invocations takes params next to any envelope, as MLflow's scoring server does (ignored without a schema)
        self.invocations_shape = Shape(names, self.settings.max_rows, allow_params=True)
        self.param_names = frozenset(p["name"] for p in self.spec.params or ())

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
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

    def decode(self, raw: bytes) -> Any:
        """The body's JSON (BodyRefused 400 naming the problem)."""
        return decode_json(raw, self.settings.max_depth, loads=jsonio.loads)

    def inputs(self, payload: Any, timing: Timing, shape: Shape | None = None) -> Inputs:
        """A scoring payload (any MLflow envelope) as validated Inputs."""
        shape = shape or self.shape
        with timing.stage("validate"):
            if self.validator is None:
                return self._tensor_inputs(payload)
            raw = read_columns(payload, shape)
            return self.validated(raw)

    def validated(self, raw: RawColumns) -> Inputs:
        assert self.validator is not None
        columns = self.validator.validate(raw)
        return Inputs(columns, raw.rows, self._params(raw.params))

    def _params(self, params: dict | None) -> dict | None:
        """The request's params the signature declares (MLflow ignores the others, and all of them without a schema)."""
        if not params or not self.param_names:
            return None
        return {k: v for k, v in params.items() if k in self.param_names} or None

    def _tensor_inputs(self, payload: Any) -> Inputs:
        params = None
        if isinstance(payload, dict):
            params = payload.get("params") if self.param_names else None
            rest = {k: v for k, v in payload.items() if k != "params"} if "params" in payload else payload
            for key in ("inputs", "instances"):
                if key in rest and len(rest) == 1:
                    payload = rest[key]
                    break
        count = len(payload) if isinstance(payload, list) else 1
        if count > self.settings.max_rows:
            raise InputError(413, f"too many rows: {count}, at most {self.settings.max_rows} per request")
        try:  # the stdlib writer is the one that refuses NaN (orjson writes null)
            json.dumps(payload, allow_nan=False)
        except ValueError:  # NaN / Infinity literals, or a number too big for a float (1e999)
            raise InputError(422, "invalid input: a number is not finite (NaN or Infinity); "
                                  "JSON numbers must be finite") from None
        return Inputs({}, count, self._params(params if isinstance(params, dict) else None), tensor=payload)

    async def respond(self, request: Request, read: ReadInputs, write: Callable[[list], bytes],
                      refuse: Callable[[Problem], Response]) -> Response:
        """The one request pipeline every predicting route runs: read, predict, write; or refuse."""
        timing = timing_of(request)
        try:
            inputs = await read(request, timing)
            predictions = await self.predict(inputs, timing)
            with timing.stage("serialize"):
                content = write(predictions)
        except (BodyRefused, InputError, BackendError, jsonio.NotSerializable) as exc:
            return refuse(Problem.of(exc))
        return json_response(content)

    async def predict(self, inputs: Inputs, timing: Timing) -> list:
        try:
            async with self.admission.slot(timing):
                predictions = await self.backend.predict(inputs, timing)
        except BackendError as exc:
            if exc.kind == "overload":
                self.metrics.overloaded.inc()
            else:
                self.metrics.upstream_errors.labels(exc.kind).inc()
            raise
        self.metrics.rows.inc(inputs.rows)
        return predictions
