"""The bento+gateway backend: predictions from the BentoML model server, one pooled hop away.

The gateway validated the request already; this sends ``{"inputs": [record, ...]}``
to the model server's ``POST /predict`` over keep-alive connections from one small
pool (upstream_pool.py: no general HTTP client on the hop, whose pools cost more
than the loopback round trip itself under concurrency) and turns each way it can
fail into a BackendError: unreachable 502, too slow 504, the model server's 4xx
passed on, its 5xx as 502 with its request id and error class.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from . import jsonio
from .backend import BackendError, Inputs, Timing
from .errors import InputError, short
from .settings import Settings
from .upstream_pool import UpstreamPool, UpstreamTimeout, UpstreamUnreachable

log = logging.getLogger("home_mlops.gateway")


class BentoBackend:
    """Backend for mode bento+gateway (see backend.Backend)."""

    def __init__(self, settings: Settings, metrics: Any = None):
        self.settings = settings
        self.metrics = metrics
        self._pool: UpstreamPool | None = None

    def _client(self) -> UpstreamPool:
        if self._pool is None:  # also without a lifespan (an ASGI transport in a test)
            s = self.settings
            self._pool = UpstreamPool(s.upstream_url, s.max_connections, s.keepalive_seconds, s.connect_timeout)
        return self._pool

    async def startup(self) -> None:
        self._client()

    async def shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()

    async def ready(self) -> bool:
        return (await self.ready_detail()) is None

    async def ready_detail(self) -> str | None:
        """None when the model server answers its readiness probe, else why not."""
        try:
            status, _, _ = await self._client().send("GET", "/readyz", None, self.settings.ready_timeout)
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            return f"model server unreachable ({type(exc).__name__})"
        if status != 200:
            return f"model server /readyz answered {status}"
        return None

    async def predict(self, inputs: Inputs, timing: Timing) -> list:
        if inputs.params:
            raise InputError(422, "this app's model server (BentoML) takes no params: send the request without "
                                  "'params', or serve the app in fastapi mode (the model in process takes them)")
        with timing.stage("serialize"):
            body = self.body(inputs)
        start = time.perf_counter()
        try:
            status, headers, content = await self._client().send("POST", "/predict", body, self.settings.timeout)
        except UpstreamTimeout:
            raise BackendError(504, f"the model server did not answer within {self.settings.timeout:g} s",
                               kind="timeout") from None
        except UpstreamUnreachable as exc:
            raise BackendError(502, f"the model server is unreachable ({short(str(exc), 80)})",
                               kind="connect") from None
        finally:
            elapsed = time.perf_counter() - start
            timing.add("predict", elapsed)
            if self.metrics is not None:
                self.metrics.upstream_latency.observe(elapsed)
        return self.answer(status, content, headers)

    @staticmethod
    def body(inputs: Inputs) -> bytes:
        """The model server's request: ``{"inputs": [record, ...]}`` (records: what service.py checks)."""
        payload = inputs.tensor if not inputs.columns else inputs.records()
        try:
            return b'{"inputs":' + jsonio.dumps(payload) + b"}"
        except jsonio.NotSerializable:  # a lone surrogate ("\\ud800") cannot be encoded as UTF-8
            raise InputError(422, "invalid input: a string holds an unpaired UTF-16 surrogate escape "
                                  "(\\ud800-\\udfff); send valid Unicode text") from None

    @staticmethod
    def answer(status: int, content: bytes, headers: dict[bytes, bytes]) -> list:
        if status >= 500:
            extra = _failure_ids(content, headers)
            raise BackendError(502, f"the model server failed (HTTP {status}): {_message(content)}",
                               kind="http_5xx", extra=extra)
        if status >= 400:
            raise BackendError(status, f"the model server rejected the input (HTTP {status}): {_message(content)}",
                               kind="http_4xx", extra={"upstream_status": status})
        try:
            result = jsonio.loads(content)
        except ValueError:
            raise BackendError(502, "the model server answered with something that is not JSON",
                               kind="bad_answer") from None
        if isinstance(result, dict) and "predictions" in result:
            result = result["predictions"]
        if not isinstance(result, list):
            result = [result]
        return result


def _json_or_none(content: bytes) -> Any:
    try:
        return jsonio.loads(content)
    except ValueError:
        return None


def _message(content: bytes) -> str:
    body = _json_or_none(content)
    if body is None:
        return short(content.decode("utf-8", "replace") or "no message")
    if isinstance(body, dict):
        for key in ("error", "detail", "message", "msg"):
            if key in body:
                value = body[key]
                return short(value if isinstance(value, str) else jsonio.dumps(value).decode())
    return short(jsonio.dumps(body).decode())


def _failure_ids(content: bytes, headers: dict[bytes, bytes]) -> dict[str, str]:
    """The model server's request id and error class for a model failure (its log holds the detail)."""
    body = _json_or_none(content)
    ids = {}
    if isinstance(body, dict):
        ids = {k: short(body[k], 64) for k in ("request_id", "error_class") if isinstance(body.get(k), str)}
    request_id = headers.get(b"x-bentoml-request-id")
    if "request_id" not in ids and request_id:
        ids["request_id"] = short(request_id.decode("latin-1"), 64)
    return ids
