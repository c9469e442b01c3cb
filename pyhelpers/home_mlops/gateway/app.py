"""The front door's FastAPI app: one API over a backend (issue 16).

``create_app(spec)`` serves, for the model described by ``spec``:

- ``POST /predict``: MLflow's scoring JSON or a single flat record (routes_predict);
- ``POST /invocations``: MLflow's scoring server protocol, JSON and CSV (routes_invocations);
- the Open Inference (V2) protocol under ``/v2`` (routes_v2);
- ``/docs`` and ``/redoc`` with their assets served from the image (docs);
- ``/healthz`` (the process), ``/readyz`` (the backend can predict), ``/metrics``
  (requests, latency, per-stage histograms, process figures), ``/`` (what is deployed).

The backend is the BentoML model server one hop away (bento_backend, mode
bento+gateway) unless the caller passes another (the in-process model, mode fastapi).
Hostile bodies are refused before they cost anything, the same way on every
predicting route (front.py): a Content-Type other than JSON (or CSV on
/invocations) is a 415, a body over the limit a 413, bytes that are not UTF-8 or
JSON nested deeper than the limit a 400, too many rows a 413 counted before any row
is built, a value that does not fit the signature a 422 naming the row and field;
too many requests at once a quick 503 with Retry-After. An error inside the gateway
answers with a request id and a class name; the detail goes to the log only.
Every answer carries ``Server-Timing`` (parse, validate, queue, predict, serialize).

Copied into the images on its own: imports only the standard library, fastapi /
starlette, pydantic, httpcore, orjson and prometheus_client, plus this package.
"""
from __future__ import annotations

import logging
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from .backend import Backend
from .bento_backend import BentoBackend
from .columns import ColumnValidator
from .docs import add_docs_routes
from .envelope import MISSING, RawColumns, Shape, read_columns
from .errors import InputError
from .front import Front, json_response, timing_of
from .metrics import FrontDoorMiddleware, Metrics
from .openapi import build_record_model
from .overload import Admission
from .routes_invocations import add_invocations_route
from .routes_predict import add_predict_route
from .routes_v2 import add_v2_routes
from .settings import DEPLOY_ID_HEADER, Settings
from .spec import GatewaySpec

__all__ = ["create_app", "extract_rows", "InputError", "Settings", "build_record_model"]

log = logging.getLogger("home_mlops.gateway")


def extract_rows(payload: Any, names: list[str], max_rows: int = 10_000) -> list[dict[str, Any]]:
    """The request's records, whatever MLflow scoring format it used (envelope.read_columns, as records).

    Counts are checked before rows are built, so a 1 MiB body of columns cannot
    make half a million dicts only to be refused afterwards.
    """
    raw: RawColumns = read_columns(payload, Shape(names, max_rows))
    return [{k: v for k, v in zip(raw.columns, values) if v is not MISSING} for values in zip(*raw.columns.values())]


def create_app(spec: GatewaySpec, upstream_url: str | None = None, backend: Backend | None = None) -> FastAPI:
    """The front door for ``spec`` over ``backend`` (default: the BentoML server at ``upstream_url``,
    else HOME_MLOPS_UPSTREAM_URL, else :3000)."""
    settings = Settings.from_env(upstream_url)
    metrics = Metrics(spec)
    if backend is None:
        backend = BentoBackend(settings, metrics)
    record_model = build_record_model(spec) if spec.input_kind == "columns" else None
    front = Front(
        spec=spec, settings=settings, metrics=metrics, backend=backend,
        admission=Admission(settings.max_in_flight, settings.max_queue, settings.queue_timeout),
        validator=ColumnValidator(spec) if spec.input_kind == "columns" else None,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await backend.startup()
        try:
            yield
        finally:
            await backend.shutdown()

    app = FastAPI(
        title=spec.display_title(),
        version=(spec.run_id[:12] or "0"),
        description=(
            f"Front door for app `{spec.app}`: experiment {spec.experiment_id or '?'}, run {spec.run_id or '?'}, "
            f"model {spec.model_id or '?'}. `POST /predict` takes MLflow scoring JSON, `POST /invocations` "
            f"speaks MLflow's scoring server protocol (JSON or CSV), `/v2/models/{spec.app}/infer` the Open "
            "Inference (V2) protocol. Every answer carries a `Server-Timing` header."
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.spec = spec
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.record_model = record_model
    app.state.front = front
    deploy_header = ((DEPLOY_ID_HEADER.lower().encode("latin-1"), settings.deploy_id.encode("latin-1"))
                     if settings.deploy_id else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # never a traceback or a path to the client: the detail is in the log under this id
        request_id = uuid.uuid4().hex[:16]
        log.error("unexpected error (request id %s)", request_id, exc_info=exc)
        resp = json_response({"detail": "internal error in the gateway", "request_id": request_id,
                              "error_class": type(exc).__name__}, 500)
        if settings.deploy_id:  # Starlette answers this one outside every middleware
            resp.headers[DEPLOY_ID_HEADER] = settings.deploy_id
        resp.headers["Server-Timing"] = timing_of(request).header()
        return resp

    add_predict_route(app, front, record_model)
    add_invocations_route(app, front, record_model)
    infer_path = add_v2_routes(app, front)
    add_docs_routes(app, spec.display_title())
    app.add_middleware(FrontDoorMiddleware, metrics=metrics, deploy_header=deploy_header, infer_path=infer_path)

    @app.get("/healthz", summary="The front door's process is up")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", summary="The model can predict (the model server answers its readiness probe)")
    async def readyz() -> Response:
        detail_of = getattr(backend, "ready_detail", None)
        if detail_of is not None:
            detail = await detail_of()
        else:
            detail = None if await backend.ready() else "the model is not loaded yet"
        if detail is not None:
            return json_response({"status": "not ready", "detail": detail}, 503)
        return json_response({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", summary="What is deployed")
    async def root() -> Response:
        return json_response({
            "app": spec.app,
            "experiment_id": spec.experiment_id,
            "run_id": spec.run_id,
            "model_id": spec.model_id,
            "model_uri": spec.model_uri,
        })

    return app
