"""The bento+gateway backend: predictions from the BentoML model server, one pooled hop away.

The gateway validated the request already; this sends ``{"inputs": [record, ...]}``
to the model server's ``POST /predict`` over keep-alive connections from one pool
(httpcore, the transport under httpx, used directly: the hop skips httpx's request
and response objects, which cost more than the loopback round trip itself) and turns
each way it can fail into a BackendError: unreachable 502, too slow 504, the model
server's 4xx passed on, its 5xx as 502 with its request id and error class.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
import time
from typing import Any

import httpcore

from . import jsonio
from .backend import BackendError, Inputs, Timing
from .errors import InputError, short
from .settings import Settings

log = logging.getLogger("home_mlops.gateway")

# httpcore tries `import sniffio` on every request (twice); anyio 4 no longer
# installs it, and a failing import searches sys.path each time (~0.4 ms). A
# None entry in sys.modules makes that import fail at once.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

_POST_HEADERS = [(b"content-type", b"application/json"), (b"accept", b"application/json")]


class BentoBackend:
    """Backend for mode bento+gateway (see backend.Backend)."""

    def __init__(self, settings: Settings, metrics: Any = None):
        self.settings = settings
        self.metrics = metrics
        self.predict_url = settings.upstream_url + "/predict"
        self.ready_url = settings.upstream_url + "/readyz"
        self._pool: httpcore.AsyncConnectionPool | None = None
        self._timeouts = {"connect": settings.connect_timeout, "read": settings.timeout,
                          "write": settings.timeout, "pool": settings.timeout}

    def _client(self) -> httpcore.AsyncConnectionPool:
        if self._pool is None:  # also without a lifespan (an ASGI transport in a test)
            s = self.settings
            self._pool = httpcore.AsyncConnectionPool(
                max_connections=s.max_connections, max_keepalive_connections=s.max_connections,
                keepalive_expiry=s.keepalive_seconds, http1=True, http2=False,
            )
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
        t = self.settings.ready_timeout
        try:
            resp = await self._client().request(
                "GET", self.ready_url, extensions={"timeout": {"connect": t, "read": t, "write": t, "pool": t}})
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            return f"model server unreachable ({type(exc).__name__})"
        if resp.status != 200:
            return f"model server /readyz answered {resp.status}"
        return None

    async def predict(self, inputs: Inputs, timing: Timing) -> list:
        if inputs.params:
            raise InputError(422, "this app's model server (BentoML) takes no params: send the request without "
                                  "'params', or serve the app in fastapi mode (the model in process takes them)")
        with timing.stage("serialize"):
            body = self.body(inputs)
        start = time.perf_counter()
        try:
            resp = await self._post(body)
        except httpcore.TimeoutException:
            raise BackendError(504, f"the model server did not answer within {self.settings.timeout:g} s",
                               kind="timeout") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            raise BackendError(502, f"the model server is unreachable ({type(exc).__name__})", kind="connect") from None
        finally:
            elapsed = time.perf_counter() - start
            timing.add("predict", elapsed)
            if self.metrics is not None:
                self.metrics.upstream_latency.observe(elapsed)
        return self.answer(resp.status, resp.content, dict(resp.headers))

    @staticmethod
    def body(inputs: Inputs) -> bytes:
        """The model server's request: ``{"inputs": [record, ...]}`` (records: what service.py checks)."""
        payload = inputs.tensor if not inputs.columns else inputs.records()
        try:
            return b'{"inputs":' + jsonio.dumps(payload) + b"}"
        except jsonio.NotSerializable:  # a lone surrogate ("\\ud800") cannot be encoded as UTF-8
            raise InputError(422, "invalid input: a string holds an unpaired UTF-16 surrogate escape "
                                  "(\\ud800-\\udfff); send valid Unicode text") from None

    async def _post(self, body: bytes) -> httpcore.Response:
        pool = self._client()
        ext = {"timeout": self._timeouts}
        try:
            return await pool.request("POST", self.predict_url, headers=_POST_HEADERS, content=body, extensions=ext)
        except httpcore.RemoteProtocolError:
            # a pooled keep-alive connection the model server had just closed: retry once
            # (prediction is a pure function, so this is safe)
            return await pool.request("POST", self.predict_url, headers=_POST_HEADERS, content=body, extensions=ext)

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
