"""What MLflow and the artifact stores behind it raise, as the CLI's errors.

Every call the resolve stage makes into MLflow (tracking server, model registry, a
NAS's artifact repository: file, gs://, s3://) runs inside ``translate_errors``. The
kind of failure comes from the exception's class and codes (error_kinds.py), never
from its message; a missing optional module is its own error (exit 2, the extra named).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from home_mlops.error_kinds import Kind, classify, missing_module
from home_mlops.errors import HomeMlopsError, NotFound, Unavailable
from home_mlops.extras import missing_dependency

#: Bounded retries for an unreachable tracking server instead of MLflow's minutes-long default.
#: MLflow reads these on every request; they are set only around our calls and only when the
#: user set none (importing this module changes nothing).
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}


@contextmanager
def bounded_mlflow_http() -> Iterator[None]:
    added = [name for name in MLFLOW_HTTP_DEFAULTS if name not in os.environ]
    for name in added:
        os.environ[name] = MLFLOW_HTTP_DEFAULTS[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextmanager
def translate_errors(where: str) -> Iterator[None]:
    try:
        with bounded_mlflow_http():
            yield
    except HomeMlopsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every foreign error becomes a clear one
        raise translate(exc, where) from None


def translate(exc: BaseException, where: str) -> HomeMlopsError:
    text = f"{type(exc).__name__}: {exc}"
    short = text if len(text) < 300 else text[:297] + "..."
    kind = classify(exc)
    if kind is Kind.MISSING_DEPENDENCY:
        module = missing_module(exc)
        assert module is not None  # classify found it in the chain
        return missing_dependency(module, f"reading {where}")
    if kind is Kind.UNAVAILABLE:
        return Unavailable(
            f"{where} did not answer ({short})",
            "a reachable service",
            "check the address, that the server is running, and the network; then run again",
        )
    if kind is Kind.NOT_FOUND:
        return NotFound(f"{where}: not found ({short})")
    if kind is Kind.DENIED:
        return Unavailable(
            f"{where} refused access ({short})",
            "credentials that can read the artifacts",
            "check the agent's credentials (MLFLOW_TRACKING_USERNAME/PASSWORD, GOOGLE_APPLICATION_CREDENTIALS, AWS_*)",
        )
    return HomeMlopsError(f"{where}: {short}", hint="see the message above; report it if it looks like a bug")
