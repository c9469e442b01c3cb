"""Serving mode fastapi: the standalone FastAPI model server image, and the builds each mode runs.

- The in-process backend's native loaders give the model's own (pyfunc) predictions for
  every example app (no Docker), and its batching merges concurrent requests while a
  failing request fails alone and an overloaded queue answers 503 at once.
- Every example app served in mode ``fastapi`` from a real image (``home-mlops
  fastapi-build --serving fastapi``): ``/predict`` answers equal the model's own
  predictions on its input example; the image carries no BentoML and no MLflow.
- A build command asked for an image its app's mode does not use exits 0, skipped.
"""
from __future__ import annotations

import asyncio
import functools
import json
import threading
from pathlib import Path

import pytest

from conftest import docker_reason, run_cli, wait_container_ready

APPS = ["tabular-iris-multi-classifier", "tabular-iris-lightgbm", "tabular-iris-xgboost", "tabular-iris-pytorch",
        "tabular-diabetes-regressor"]
TEST_PORTS = iter(range(19200, 19240))  # this helper's range; one per served container


_RESOLVED: dict[str, dict] = {}


def resolved_model(run) -> dict:
    """`home-mlops resolve --json -` of the run, once per run in this module (each is a CLI start)."""
    if run.run_id not in _RESOLVED:
        _RESOLVED[run.run_id] = _resolve(run)
    return _RESOLVED[run.run_id]


def _resolve(run) -> dict:
    proc = run_cli(["resolve", "--experiment-id", run.experiment_id, "--run-id", run.run_id, "--json", "-"], run.env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@functools.cache
def model_inputs(local_path: str):
    """(column name -> signature type, the input example's records, the model's own predictions),
    once per model folder."""
    import mlflow.pyfunc

    from home_mlops.build.gateway_context import load_model_spec
    from home_mlops.gateway.inprocess import frame_of, to_json

    spec = load_model_spec(Path(local_path), app="hmt-g2")
    types = {c.name: c.type for c in spec.inputs}
    records = spec.input_example
    columns = {name: [r[name] for r in records] for name in types}
    expected = to_json(mlflow.pyfunc.load_model(local_path).predict(frame_of(columns, types)))
    return types, records, expected


def assert_close(served: list, expected: list) -> None:
    assert len(served) == len(expected)
    for got, want in zip(served, expected):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------- no Docker


@pytest.mark.parametrize("app", APPS)
def test_native_loader_predicts_like_pyfunc(app, trained_run, monkeypatch):
    """One request per row and one request with every row: both equal MLflow's pyfunc predict."""
    from home_mlops.gateway.backend import Inputs, Timing
    from home_mlops.gateway.inprocess import InProcessBackend

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    resolved = resolved_model(trained_run(app))
    types, records, expected = model_inputs(resolved["local_path"])
    backend = InProcessBackend(resolved["local_path"], types)

    async def serve():
        await backend.startup()
        try:
            one_each = await asyncio.gather(*[
                backend.predict(Inputs({n: [r[n]] for n in types}, 1), Timing()) for r in records])
            together = await backend.predict(Inputs({n: [r[n] for r in records] for n in types}, len(records)),
                                             Timing())
        finally:
            await backend.shutdown()
        return [p[0] for p in one_each], together

    one_each, together = asyncio.run(serve())
    assert backend.model.flavor != "python_function"  # a native loader, not the fallback
    assert_close(one_each, expected)
    assert_close(together, expected)


class _Model:
    """A stand-in model for the batching logic: records every call, fails on a negative x; with
    ``hold`` its first call waits until the test opens ``gate`` (no timing in the test)."""

    def __init__(self, seconds: float = 0.0, hold: bool = False):
        self.calls: list[int] = []
        self.seconds = seconds
        self.gate = threading.Event()
        if not hold:
            self.gate.set()

    def run(self, frame, _params):
        import time

        self.calls.append(len(frame))
        self.gate.wait(timeout=60)
        if self.seconds:
            time.sleep(self.seconds)
        if (frame["x"] < 0).any():
            raise ValueError("negative")
        return (frame["x"] * 2).tolist()


def _backend(model: _Model, **settings):
    from home_mlops.gateway.inprocess import BatchSettings, InProcessBackend, Model

    backend = InProcessBackend("/nonexistent", {"x": "double"}, BatchSettings(**settings))

    async def start():  # what startup does, with the stand-in model
        from concurrent.futures import ThreadPoolExecutor

        backend._executor = ThreadPoolExecutor(max_workers=1)
        backend.model = Model("stand-in", model.run)
        backend._wakeup = asyncio.Event()
        backend._task = asyncio.create_task(backend._serve())

    return backend, start


def test_batching_merges_waiting_requests_and_isolates_a_failing_one():
    from home_mlops.gateway.backend import BackendError, Inputs, Timing

    model = _Model(hold=True)
    backend, start = _backend(model)

    async def until(condition) -> None:
        for _ in range(6000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the backend never got there")

    async def scenario():
        await start()
        first = asyncio.ensure_future(backend.predict(Inputs({"x": [1.0]}, 1), Timing()))
        await until(lambda: model.calls == [1])  # the first request is in the model (held there)
        timings = [Timing() for _ in range(3)]
        rest = [asyncio.ensure_future(backend.predict(Inputs({"x": [float(v)]}, 1), t))
                for v, t in zip((2, -1, 3), timings)]
        await until(lambda: backend.rows_queued == 3)  # the three queue behind it
        model.gate.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        await backend.shutdown()
        return results, timings

    results, timings = asyncio.run(scenario())
    assert results[0] == [2.0] and results[1] == [4.0] and results[3] == [6.0]
    assert isinstance(results[2], BackendError) and results[2].status == 500
    assert set(results[2].extra) == {"request_id", "error_class"} and results[2].extra["error_class"] == "ValueError"
    # one call for the first request, one merged call for the three queued ones, then the retry per request
    assert model.calls[:2] == [1, 3] and sorted(model.calls[2:]) == [1, 1, 1]
    assert all(t.seconds["queue"] > 0 and "predict" in t.seconds for t in timings)


def test_overload_is_a_quick_503_with_retry_after():
    from home_mlops.gateway.backend import BackendError, Inputs, Timing

    model = _Model(seconds=0.2)
    backend, start = _backend(model, max_queue_seconds=0.1, max_batch_rows=1)

    async def scenario():
        await start()
        answers = await asyncio.gather(*[backend.predict(Inputs({"x": [1.0]}, 1), Timing()) for _ in range(6)],
                                       return_exceptions=True)
        await backend.shutdown()
        return answers

    answers = asyncio.run(scenario())
    refused = [a for a in answers if isinstance(a, BackendError)]
    assert answers[0] == [2.0]
    assert refused and all(a.status == 503 and a.retry_after and a.kind == "overloaded" for a in refused)
    assert len(model.calls) < 6  # refused requests never reached the model


def test_server_requirements_drop_mlflow_for_native_flavors_only():
    from home_mlops.build.server_image import server_requirements

    reqs = ["mlflow==3.17.2", "numpy==2.4.6", "scikit-learn==1.9.1"]
    native = server_requirements(reqs, {"flavors": {"sklearn": {"serialization_format": "cloudpickle"}}})
    names = {r.partition("==")[0] for r in native}
    assert "mlflow" not in names and "mlflow-skinny" not in names and "bentoml" not in names
    assert {"cloudpickle", "fastapi", "uvicorn", "scikit-learn", "numpy"} <= names
    fallback = server_requirements(reqs, {"flavors": {"python_function": {}, "catboost": {}}})
    assert "mlflow-skinny==3.17.2" in fallback and not any(r.startswith("mlflow==") for r in fallback)


def test_every_dockerfile_comes_from_the_one_environment():
    from home_mlops.build.dockerfiles import bash_quote, environment, render
    from home_mlops.errors import BadInput

    assert sorted(t for t in environment().list_templates() if t.endswith(".j2")) == [
        "_macros.j2", "bento.Dockerfile.j2", "gateway.Dockerfile.j2", "server.Dockerfile.j2"]
    assert bash_quote("a b'; rm -rf /") == "'a b'\"'\"'; rm -rf /'"
    text = render("server.Dockerfile.j2", dict(app="hmt-g2", base_image="home-mlops/python-base:3.11", port=8000,
                                               uid=10001, extra=False))
    instructions = [line for line in text.splitlines() if not line.startswith("#")]
    assert "HOME_MLOPS_MODEL_DIR=/app/model" in text and not any("bentoml" in line.lower() for line in instructions)
    health = next(line for line in text.splitlines() if line.strip().startswith("CMD [") and "urllib" in line)
    assert "/readyz" in health and "ProxyHandler" in health
    with pytest.raises(BadInput):
        render("server.Dockerfile.j2", dict(app="x", base_image="img\nRUN curl evil", port=8000, uid=1, extra=False))


# --------------------------------------------------------------------------- real images

docker_only = pytest.mark.skipif(bool(docker_reason()), reason=docker_reason() or "")


def build_server(run, tmp_path: Path) -> dict:
    out = tmp_path / "server.json"
    proc = run_cli(["fastapi-build", "--no-push", "--serving", "fastapi", "--app", f"hmt-g2-{run.experiment_id}",
                    "--experiment-id", run.experiment_id, "--run-id", run.run_id, "--registry", "hmt-g2",
                    "--json", str(out)], run.env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="session")
def server_images(tmp_path_factory):
    """app -> the fastapi-build result of its standalone server image (one build per app per session)."""
    made: dict[str, dict] = {}
    yield made
    import docker

    client = docker.from_env()
    for result in made.values():
        try:
            client.images.remove(result["image"], force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


@docker_only
@pytest.mark.docker
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("app", APPS)
def test_every_example_app_serves_from_its_server_image(app, trained_run, server_images, tmp_path):
    import docker
    import httpx

    run = trained_run(app)
    if app not in server_images:
        server_images[app] = build_server(run, tmp_path)
    result = server_images[app]
    assert result["role"] == "server" and result["image"].startswith(f"hmt-g2/hmt-g2-{run.experiment_id}-server:")
    client = docker.from_env()
    image = client.images.get(result["image"])
    assert image.labels["io.homemlops.role"] == "server"
    port = next(TEST_PORTS)
    container = client.containers.run(
        result["image"], detach=True, network_mode="host", name=f"hmt-g2-{app}-{port}",
        environment={"HOME_MLOPS_GATEWAY_HOST": "127.0.0.1", "HOME_MLOPS_GATEWAY_PORT": str(port)})
    try:
        wait_container_ready(f"http://127.0.0.1:{port}/readyz", container, seconds=180)
        _types, records, expected = model_inputs(resolved_model(run)["local_path"])
        resp = httpx.post(f"http://127.0.0.1:{port}/predict", json={"dataframe_records": records}, timeout=30,
                          trust_env=False)
        assert resp.status_code == 200, resp.text
        assert_close(resp.json()["predictions"], expected)
        assert "predict;dur=" in resp.headers["server-timing"]
        # no BentoML and no MLflow in the image: the model runs on its own framework
        listing = container.exec_run(["/opt/venv/bin/python", "-c",
                                      "import importlib.util as u; print([m for m in ('bentoml', 'mlflow') "
                                      "if u.find_spec(m)])"]).output.decode()
        assert listing.strip() == "[]", listing
    finally:
        container.remove(force=True)


def test_a_build_for_a_role_the_mode_does_not_use_is_skipped(trained_run, tmp_path):
    run = trained_run("tabular-iris-multi-classifier")
    args = ["--app", "hmt-g2-skip", "--experiment-id", run.experiment_id, "--run-id", run.run_id,
            "--registry", "hmt-g2", "--no-push"]
    for command, mode, role in (("bento-build", "fastapi", "bento"), ("fastapi-build", "bento", "gateway")):
        out = tmp_path / f"{command}.json"
        proc = run_cli([command, *args, "--serving", mode, "--json", str(out)], run.env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(out.read_text())
        assert result["ok"] is True and result["status"] == "skipped" and "image" not in result
        assert mode in result["reason"] and result["summary"].startswith(f"{command}: skipped")
        assert f"summary: {command}: skipped" in proc.stderr
