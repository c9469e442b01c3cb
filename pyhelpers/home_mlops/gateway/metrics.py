"""Prometheus metrics and the one ASGI middleware every answer goes through.

``FrontDoorMiddleware`` times each request into a ``Timing`` the routes fill in
(parse, validate, queue, predict, serialize), adds the ``Server-Timing`` header and
the deploy id header to every answer, and records the request count, the latency and
the per-stage histograms. A plain ASGI middleware: cheaper than Starlette's
BaseHTTPMiddleware on the hot path.
"""
from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from .backend import STAGES, Timing
from .spec import GatewaySpec

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
#: the key of the request's Timing in the ASGI scope's state (``request.state.timing``)
TIMING = "timing"
#: paths with their own label; every other path is counted as "other" (no series per junk URL)
KNOWN_PATHS = frozenset({"/predict", "/invocations", "/healthz", "/readyz", "/metrics", "/", "/docs", "/redoc",
                         "/openapi.json", "/v2", "/v2/health/live", "/v2/health/ready"})
#: routes that predict: their stages go into the histograms
PREDICTING = frozenset({"/predict", "/invocations", "v2-infer"})


class Metrics:
    def __init__(self, spec: GatewaySpec):
        self.app_name = spec.app
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests", "HTTP requests answered by the gateway",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds", "Time to answer a request, in seconds",
            ["endpoint", "status"], registry=self.registry, buckets=BUCKETS,
        )
        self.stages = Histogram(
            "gateway_stage_duration_seconds",
            "Where a prediction's time goes (the Server-Timing stages: " + ", ".join(STAGES) + "), in seconds",
            ["endpoint", "stage"], registry=self.registry, buckets=STAGE_BUCKETS,
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_duration_seconds", "Time the model server took to answer /predict",
            registry=self.registry, buckets=BUCKETS,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Failed calls to the model server (or the in-process model)",
            ["kind"], registry=self.registry,
        )
        self.overloaded = Counter(
            "gateway_overload_refused", "Requests answered 503 because too many were in flight or queued",
            registry=self.registry,
        )
        self.rows = Counter("gateway_predicted_rows", "Rows sent to the model", registry=self.registry)
        info = Gauge(
            "gateway_model_info", "The deployed model", ["app", "run_id", "model_id"],
            registry=self.registry, multiprocess_mode="max",
        )
        info.labels(spec.app, spec.run_id, spec.model_id or "").set(1)
        # process_* (CPU, memory, open fds), python_info and python_gc_*
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        # pre-created so a scrape lists every stage before the first prediction
        self._stage = {(e, s): self.stages.labels(e, s) for e in PREDICTING for s in STAGES}
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:  # labels() looks the series up each call: keep them per key
            code = str(status)
            children = (self.requests.labels(endpoint, method, code), self.latency.labels(endpoint, code))
            if len(self._children) < 1000:  # a client inventing methods does not grow this dict
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_stages(self, endpoint: str, timing: Timing) -> None:
        seconds = timing.seconds
        for stage in STAGES:
            if stage in seconds:
                self._stage[endpoint, stage].observe(seconds[stage])

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            ProcessCollector(registry=registry)  # this worker's own process figures
            return generate_latest(registry)
        return generate_latest(self.registry)


def endpoint_of(path: str, infer_path: str) -> str:
    if path in KNOWN_PATHS:
        return path
    if path == infer_path:
        return "v2-infer"
    if path.startswith("/v2/"):
        return "v2"
    if path.startswith("/docs/"):
        return "/docs"
    return "other"


class FrontDoorMiddleware:
    """Timing, Server-Timing, deploy id header and request metrics for every HTTP answer."""

    def __init__(self, app: Any, metrics: Metrics, deploy_header: tuple[bytes, bytes] | None, infer_path: str):
        self.app = app
        self.metrics = metrics
        self.deploy_header = deploy_header
        self.infer_path = infer_path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        timing = Timing()
        scope.setdefault("state", {})[TIMING] = timing
        status = 500
        extra = [self.deploy_header] if self.deploy_header else []

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra,
                                      (b"server-timing", timing.header().encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            endpoint = endpoint_of(scope.get("path", ""), self.infer_path)
            self.metrics.observe_request(endpoint, scope.get("method", ""), status, time.perf_counter() - start)
            if endpoint in PREDICTING and timing.seconds:
                self.metrics.observe_stages(endpoint, timing)
