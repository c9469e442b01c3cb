"""The in-process backend (serving mode ``fastapi``): the model runs inside the front door.

No BentoML and no second hop: the model is loaded with its flavor's *native*
loader (scikit-learn, XGBoost, LightGBM, PyTorch; MLflow's pyfunc only as the
fallback for any other flavor), and concurrent requests are batched adaptively:

- the routes validate each request into ``Inputs`` *before* it is queued, so a bad
  row never reaches a batch and one client's row can never fail another's request;
- while the model is busy, arriving requests queue; the next batch takes everything
  queued (up to ``max_batch_rows``), so at low load a request runs at once (no fixed
  wait) and under load one model call serves many requests;
- ``HOME_MLOPS_BATCH_WAIT_MS`` (default 0) may add a bounded wait for more rows;
- the wait in the queue is bounded: a request the queue cannot serve within
  ``HOME_MLOPS_MAX_QUEUE_SECONDS`` (default 1) is answered at once with 503 and
  ``Retry-After`` instead of letting the client time out;
- a batch the model fails on is retried request by request; only the failing
  request gets the 500 (with a request id; the detail goes to the log).

The model's own thread pools (OpenMP, MKL, torch) get ``HOME_MLOPS_MODEL_THREADS``
(default 1): ``workers`` processes, sized from the app's CPUs, are the parallelism.

This file is copied into the standalone server image as part of the ``gateway``
package: standard library, numpy and pandas at import time; the framework of the
model's flavor is imported when the model is loaded. Settings are read from the
environment here (the image has no ``home_mlops`` package; their declarations
live in ``home_mlops/env.py``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .backend import BackendError, Inputs, Timing

log = logging.getLogger("home_mlops.gateway.inprocess")

ENV_MODEL_DIR = "HOME_MLOPS_MODEL_DIR"
ENV_MAX_BATCH_ROWS = "HOME_MLOPS_MAX_BATCH_ROWS"
ENV_BATCH_WAIT_MS = "HOME_MLOPS_BATCH_WAIT_MS"
ENV_MAX_QUEUE_SECONDS = "HOME_MLOPS_MAX_QUEUE_SECONDS"
ENV_MODEL_THREADS = "HOME_MLOPS_MODEL_THREADS"

#: the MLmodel file as JSON, written next to the model at image build time (the image has no YAML parser)
MLMODEL_JSON = "MLmodel.json"
#: signature type -> the pandas dtype the model was trained on (as MLflow's schema enforcement casts)
DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool",
          "string": "object"}
NATIVE_FLAVORS = ("sklearn", "xgboost", "lightgbm", "pytorch")


# --------------------------------------------------------------------------- settings


def _number(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw[:40]!r} is not a number") from None
    if not (low <= value <= high) or math.isnan(value):
        raise ValueError(f"{name}={raw[:40]!r} should be between {low:g} and {high:g}")
    return value


@dataclass(frozen=True)
class BatchSettings:
    """How requests are merged and how long one may wait (see the module doc)."""

    max_batch_rows: int = 256
    batch_wait_seconds: float = 0.0
    max_queue_seconds: float = 1.0
    model_threads: int = 1

    @classmethod
    def from_env(cls) -> "BatchSettings":
        return cls(
            max_batch_rows=int(_number(ENV_MAX_BATCH_ROWS, 256, 1, 100_000)),
            batch_wait_seconds=_number(ENV_BATCH_WAIT_MS, 0, 0, 100) / 1000,
            max_queue_seconds=_number(ENV_MAX_QUEUE_SECONDS, 1.0, 0.01, 600),
            model_threads=int(_number(ENV_MODEL_THREADS, 1, 1, 256)),
        )


# --------------------------------------------------------------------------- loading


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    """The MLmodel as a dict: ``MLmodel.json`` (written at build time), else the YAML itself."""
    as_json = model_dir / MLMODEL_JSON
    if as_json.is_file():
        return json.loads(as_json.read_text(encoding="utf-8"))
    import yaml  # only where PyYAML is installed (tests on the host, the pyfunc fallback's image)

    return yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}


def _inside(model_dir: Path, name: Any, field_name: str) -> Path:
    """A file the MLmodel names, refused when it points out of the model folder (checked at build
    time too; the image checks again because it loads whatever the folder holds)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"MLmodel field {field_name} should name a file in the model folder")
    path = (model_dir / name).resolve()
    if model_dir.resolve() not in path.parents and path != model_dir.resolve():
        raise ValueError(f"MLmodel field {field_name}={name[:80]!r} points out of the model folder")
    return path


def _import_attr(dotted: str) -> Any:
    import importlib

    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _load_sklearn_file(path: Path, conf: dict[str, Any]) -> Any:
    fmt = conf.get("serialization_format", "cloudpickle")
    if fmt == "skops":
        import skops.io

        return skops.io.load(path, trusted=conf.get("skops_trusted_types"))
    with open(path, "rb") as handle:
        if fmt == "pickle":
            import pickle

            return pickle.load(handle)  # noqa: S301 - the model's own file, checked at build time
        import cloudpickle

        return cloudpickle.load(handle)


@dataclass
class Model:
    """A loaded model and how to call it: ``run(data, params)`` returns the raw prediction."""

    flavor: str
    run: Callable[[Any, dict | None], Any]
    takes_params: bool = False


def load_model(model_dir: Path, mlmodel: dict[str, Any]) -> Model:
    """The model with the first native flavor it has, else MLflow's pyfunc."""
    flavors = mlmodel.get("flavors") or {}
    pyfunc_conf = flavors.get("python_function") or {}
    if "sklearn" in flavors:
        conf = flavors["sklearn"]
        model = _load_sklearn_file(_inside(model_dir, conf.get("pickled_model"), "flavors.sklearn.pickled_model"), conf)
        method = getattr(model, str(pyfunc_conf.get("predict_fn") or "predict"))
        return Model("sklearn", lambda data, _params: method(data))
    if "xgboost" in flavors:
        conf = flavors["xgboost"]
        model = _import_attr(str(conf.get("model_class") or "xgboost.core.Booster"))()
        model.load_model(str(_inside(model_dir, conf.get("data"), "flavors.xgboost.data")))
        if type(model).__name__ == "Booster":
            import xgboost

            return Model("xgboost", lambda data, _params: model.predict(xgboost.DMatrix(data)))
        return Model("xgboost", lambda data, _params: model.predict(data))
    if "lightgbm" in flavors:
        conf = flavors["lightgbm"]
        path = _inside(model_dir, conf.get("data"), "flavors.lightgbm.data")
        if str(conf.get("model_class") or "lightgbm.basic.Booster") == "lightgbm.basic.Booster":
            import lightgbm

            model = lightgbm.Booster(model_file=str(path))
        else:
            model = _load_sklearn_file(path, conf)
        return Model("lightgbm", lambda data, _params: model.predict(data))
    if "pytorch" in flavors:
        return _load_pytorch(model_dir, flavors["pytorch"])
    import mlflow.pyfunc  # the fallback: any flavor MLflow can serve (the image then carries mlflow-skinny)

    model = mlflow.pyfunc.load_model(str(model_dir))
    has_params = bool((mlmodel.get("signature") or {}).get("params"))
    return Model("python_function", lambda data, params: model.predict(data, params=params) if params
                 else model.predict(data), takes_params=has_params)


def _load_pytorch(model_dir: Path, conf: dict[str, Any]) -> Model:
    """What mlflow.pytorch's pyfunc wrapper does: float32 tensor in, a DataFrame of the output out."""
    import numpy as np
    import pandas as pd
    import torch

    data_dir = _inside(model_dir, conf.get("model_data") or "data", "flavors.pytorch.model_data")
    model = torch.load(str(data_dir / "model.pth"), weights_only=False)  # the model's own pickle
    model.eval()

    def run(data: Any, _params: dict | None) -> Any:
        frame = data if isinstance(data, pd.DataFrame) else None
        array = frame.to_numpy(dtype=np.float32) if frame is not None else np.asarray(data)
        with torch.no_grad():
            out = model(torch.from_numpy(array))
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the model returned {type(out).__name__}, expected one tensor")
        return pd.DataFrame(out.numpy()) if frame is not None else out.numpy()

    return Model("pytorch", run)


def limit_threads(threads: int) -> None:
    """One model call uses ``threads`` cores: the worker processes are the parallelism.
    Set before the framework is imported (OpenMP reads it once)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))


# --------------------------------------------------------------------------- data in and out


def to_json(value: Any) -> list[Any]:
    """The prediction as one JSON-able value per row, as the bento's service answers."""
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records") if value.shape[1] > 1 else value.iloc[:, 0].tolist()
    if isinstance(value, pd.Series):
        return value.tolist()
    return np.asarray(value).tolist()


def frame_of(columns: dict[str, list], types: dict[str, str]) -> Any:
    """One DataFrame of validated columns in the signature's dtypes, each column made once
    (numpy array of its dtype; no per-row objects, no astype copy afterwards)."""
    import numpy as np
    import pandas as pd

    data = {}
    for name, values in columns.items():
        dtype = DTYPES.get(types.get(name, ""))
        try:
            data[name] = np.asarray(values, dtype=dtype) if dtype else values
        except (TypeError, ValueError):  # an optional column's None: as pandas infers it
            data[name] = values
    return pd.DataFrame(data, copy=False)


# --------------------------------------------------------------------------- batching


@dataclass
class _Pending:
    inputs: Inputs
    future: asyncio.Future
    queued_at: float
    timing: Timing


@dataclass
class _Load:
    """Recent cost of a model call, to tell a new request at once when it cannot be served in time."""

    seconds_per_row: float = 0.0
    seconds_per_call: float = 0.0
    samples: int = field(default=0)

    def observe(self, rows: int, seconds: float) -> None:
        per_row = seconds / max(rows, 1)
        alpha = 0.2 if self.samples else 1.0
        self.seconds_per_row += alpha * (per_row - self.seconds_per_row)
        self.seconds_per_call += alpha * (seconds - self.seconds_per_call)
        self.samples += 1

    def wait_for(self, rows_ahead: int, calls_ahead: int) -> float:
        # the row cost times the rows ahead overstates a batched call; the call cost is the floor
        return max(self.seconds_per_call * calls_ahead, self.seconds_per_row * rows_ahead * 0.5)


class InProcessBackend:
    """``Backend`` over a model loaded in this process (see the module doc)."""

    def __init__(self, model_dir: Path | str, types: dict[str, str], settings: BatchSettings | None = None):
        self.model_dir = Path(model_dir)
        self.types = dict(types)  # column name -> signature type
        self.settings = settings or BatchSettings()
        self.model: Model | None = None
        self.queue: deque[_Pending] = deque()
        self.rows_queued = 0
        self.load = _Load()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_env(cls, spec: Any) -> "InProcessBackend":
        """The backend the standalone server image runs: the model folder from HOME_MLOPS_MODEL_DIR,
        column types from the gateway spec."""
        model_dir = os.environ.get(ENV_MODEL_DIR, "").strip()
        if not model_dir or not Path(model_dir).is_dir():
            raise ValueError(f"{ENV_MODEL_DIR}={model_dir[:120]!r} is not a model folder")
        types = {c.name: c.type for c in getattr(spec, "inputs", []) if c.name is not None}
        return cls(model_dir, types, BatchSettings.from_env())

    # ----------------------------------------------------------------- Backend

    async def startup(self) -> None:
        limit_threads(self.settings.model_threads)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        loop = asyncio.get_running_loop()
        mlmodel = read_mlmodel(self.model_dir)
        started = time.perf_counter()
        # in the model thread: /healthz keeps answering while a big model loads
        self.model = await loop.run_in_executor(self._executor, load_model, self.model_dir, mlmodel)
        if self.model.flavor == "pytorch":
            import torch

            torch.set_num_threads(self.settings.model_threads)
        log.info("loaded the %s model from %s in %.2f s", self.model.flavor, self.model_dir,
                 time.perf_counter() - started)
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._serve(), name="batcher")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self.queue:
            pending = self.queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(BackendError(503, "the server is shutting down", kind="shutdown",
                                                          retry_after=1))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def ready(self) -> bool:
        return self.model is not None and self._task is not None and not self._task.done()

    async def predict(self, inputs: Inputs, timing: Timing) -> list:
        if self.model is None or self._wakeup is None:
            raise BackendError(503, "the model is still loading", kind="not_ready", retry_after=1)
        rows = max(inputs.rows, 1)
        batches_ahead = math.ceil((self.rows_queued + rows) / self.settings.max_batch_rows) + 1
        if self.queue and self.load.wait_for(self.rows_queued + rows, batches_ahead) > self.settings.max_queue_seconds:
            raise self._overloaded()
        future = asyncio.get_running_loop().create_future()
        self.queue.append(_Pending(inputs, future, time.perf_counter(), timing))
        self.rows_queued += rows
        self._wakeup.set()
        return await future

    def _overloaded(self) -> BackendError:
        retry = max(1, math.ceil(self.settings.max_queue_seconds))
        return BackendError(503, "the model server is at capacity: retry after a moment", kind="overloaded",
                            retry_after=retry)

    # ----------------------------------------------------------------- the batch loop

    def _take(self) -> list[_Pending]:
        """The next batch: queued requests in order while their rows fit (a request alone may be larger);
        a request with params or a tensor goes alone. Requests that waited too long are refused."""
        batch: list[_Pending] = []
        rows = 0
        now = time.perf_counter()
        while self.queue:
            head = self.queue[0]
            if head.future.done():  # the client went away
                self.queue.popleft()
                self.rows_queued -= max(head.inputs.rows, 1)
                continue
            if now - head.queued_at > self.settings.max_queue_seconds:
                self.queue.popleft()
                self.rows_queued -= max(head.inputs.rows, 1)
                head.future.set_exception(self._overloaded())
                continue
            alone = head.inputs.params is not None or head.inputs.tensor is not None
            if batch and (alone or rows + head.inputs.rows > self.settings.max_batch_rows):
                break
            self.queue.popleft()
            self.rows_queued -= max(head.inputs.rows, 1)
            batch.append(head)
            rows += head.inputs.rows
            if alone:
                break
        return batch

    async def _serve(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self.settings.batch_wait_seconds and self.rows_queued < self.settings.max_batch_rows:
                await asyncio.sleep(self.settings.batch_wait_seconds)
            while self.queue:
                batch = self._take()
                if not batch:
                    continue
                started = time.perf_counter()
                for pending in batch:
                    pending.timing.add("queue", started - pending.queued_at)
                answers = await loop.run_in_executor(self._executor, self._run_batch, batch)
                seconds = time.perf_counter() - started
                self.load.observe(sum(p.inputs.rows for p in batch), seconds)
                for pending, answer in zip(batch, answers):
                    pending.timing.add("predict", seconds)
                    if pending.future.done():
                        continue
                    if isinstance(answer, BackendError):
                        pending.future.set_exception(answer)
                    else:
                        pending.future.set_result(answer)

    # ----------------------------------------------------------------- in the model thread

    def _call(self, inputs_list: list[Inputs]) -> list[Any]:
        assert self.model is not None
        first = inputs_list[0]
        if first.tensor is not None:
            import numpy as np

            return to_json(self.model.run(np.asarray(first.tensor), first.params))
        if len(inputs_list) == 1:
            columns = first.columns
        else:
            columns = {name: [] for name in first.columns}
            for inputs in inputs_list:
                for name, values in inputs.columns.items():
                    columns[name].extend(values)
        return to_json(self.model.run(frame_of(columns, self.types), first.params))

    def _run_batch(self, batch: list[_Pending]) -> list[Any]:
        """Each request's predictions (a list), or a BackendError for a request the model failed on."""
        try:
            flat = self._call([p.inputs for p in batch])
        except Exception as exc:  # noqa: BLE001 - a model failure: find the request it belongs to
            if len(batch) == 1:
                return [_failure(exc)]
            log.warning("the model failed on a batch of %d requests (%s); retrying them one by one",
                        len(batch), type(exc).__name__)
            return [self._run_batch([p])[0] for p in batch]
        expected = sum(max(p.inputs.rows, 1) if p.inputs.tensor is None else len(flat) for p in batch)
        if len(flat) != expected:
            return [_failure(ValueError(f"the model returned {len(flat)} predictions for {expected} rows"))
                    for _ in batch]
        answers, at = [], 0
        for pending in batch:
            size = len(flat) if pending.inputs.tensor is not None else pending.inputs.rows
            answers.append(flat[at:at + size])
            at += size
        return answers


def _failure(exc: BaseException) -> BackendError:
    request_id = uuid.uuid4().hex[:16]
    log.error("model failure (request id %s)", request_id, exc_info=exc)
    return BackendError(500, "the model failed on this input; the server log has the detail under request_id",
                        kind="model", extra={"request_id": request_id, "error_class": type(exc).__name__})
