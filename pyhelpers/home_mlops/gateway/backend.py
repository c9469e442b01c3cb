"""What every FastAPI front door predicts with: a backend (the serving-modes contract, issue 16).

``gateway/app.py`` builds one FastAPI app (``/predict``, ``/invocations``, Open
Inference V2, docs, health, metrics) over a ``Backend``:

- ``bento_backend.BentoBackend``: forwards to the BentoML model server over a
  pooled keep-alive connection (mode ``bento+gateway``);
- ``inprocess.InProcessBackend``: the model loaded in this process with its
  flavor's native loader, concurrent requests batched (mode ``fastapi``).

The routes parse and validate a request into ``Inputs`` (column-oriented, in the
signature's column order, no dict per row) before the backend sees it, so a
backend never has to re-check a client's body. Standard library only: this file
is copied into both images.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

#: the stages a request's time is split into, in the order they happen
#: (``Server-Timing`` header and the ``/metrics`` histograms use these names)
STAGES = ("parse", "validate", "queue", "predict", "serialize")


@dataclass(frozen=True)
class Inputs:
    """A validated request.

    ``columns`` maps each signature column name to its ``rows`` values, in the
    signature's order (a column the request left out as optional holds None per row).
    ``params`` are the request's MLflow ``params`` (only when the signature has a params
    schema). ``tensor`` carries a tensor-based or signature-less request as the client
    sent it (``columns`` is then empty): those are passed through unvalidated.
    """

    columns: dict[str, list]
    rows: int
    params: dict | None = None
    tensor: Any = None

    def records(self) -> list[dict[str, Any]]:
        """One dict per row (for a backend whose model wants records; the routes never need it)."""
        names = list(self.columns)
        return [dict(zip(names, values)) for values in zip(*self.columns.values())] if names else []


class Timing:
    """Seconds spent per stage of one request; rendered as a ``Server-Timing`` header.

    ``add`` accumulates (a stage may be timed in pieces); ``stage`` is a context
    manager for the common case. Not thread-safe: one Timing per request.
    """

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def stage(self, name: str) -> "_Stage":
        return _Stage(self, name)

    def header(self) -> str:
        """``parse;dur=0.041, validate;dur=0.012, ...`` in milliseconds, every stage listed (0 when skipped)."""
        get = self.seconds.get  # one f-string: this runs on every answer
        return (f"parse;dur={get('parse', 0.0) * 1000:.3f}, validate;dur={get('validate', 0.0) * 1000:.3f}, "
                f"queue;dur={get('queue', 0.0) * 1000:.3f}, predict;dur={get('predict', 0.0) * 1000:.3f}, "
                f"serialize;dur={get('serialize', 0.0) * 1000:.3f}")


class _Stage:
    __slots__ = ("timing", "name", "start")

    def __init__(self, timing: Timing, name: str):
        self.timing, self.name = timing, name

    def __enter__(self) -> "_Stage":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.timing.add(self.name, time.perf_counter() - self.start)


class BackendError(Exception):
    """The backend could not predict: the HTTP status for the client and a message saying why.

    ``extra`` goes into the error body as is (``request_id``, ``error_class``,
    ``upstream_status``); ``retry_after`` (seconds) adds a ``Retry-After`` header
    (503 when overloaded or not ready yet). ``kind`` labels the failure in ``/metrics``.
    """

    def __init__(self, status: int, detail: str, *, kind: str = "error",
                 extra: dict[str, Any] | None = None, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.detail, self.kind = status, detail, kind
        self.extra = extra or {}
        self.retry_after = retry_after


@runtime_checkable
class Backend(Protocol):
    """What the front door predicts with (see the module doc)."""

    async def startup(self) -> None:
        """Open connections / load the model (called from the app's lifespan)."""

    async def shutdown(self) -> None:
        """Release what startup took."""

    async def ready(self) -> bool:
        """Whether a prediction would be served now (``/readyz``, ``/v2/health/ready``)."""

    async def predict(self, inputs: Inputs, timing: Timing) -> list:
        """One JSON-able prediction per row; raises BackendError when it cannot.

        Adds its own stages to ``timing`` (``queue`` while waiting for a batch or a
        connection, ``predict`` for the model itself).
        """
