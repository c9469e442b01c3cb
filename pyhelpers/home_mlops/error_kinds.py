"""What kind of failure a library's exception is: by its class and status code, never its message.

A message is text a user controls (a run id "...503...", a bucket named "notfound") or
a library may reword; a class, an ``error_code`` or an HTTP status is the library's own
answer. One function per library below; ``classify`` walks an exception and the
exceptions it was raised from (MLflow wraps a requests error as ``__context__``)
and returns the first kind any of them names.

A library is looked at only when it is already imported (``sys.modules``): an exception
can only come from a library that is loaded, and classifying must never import an
optional dependency that may be missing.
"""
from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Iterator
from typing import Any


class Kind(enum.Enum):
    UNAVAILABLE = "unavailable"  # no answer, a time-out, a 5xx/429: try again later
    NOT_FOUND = "not found"  # the service answered: no such run, bucket, object, endpoint
    DENIED = "denied"  # the service answered: these credentials may not (401/403, none found)
    MISSING_DEPENDENCY = "missing dependency"  # a Python module is not installed


def status_kind(status: object) -> Kind | None:
    """An HTTP status code's kind (None: not one of ours to name, e.g. 400 or 500)."""
    if not isinstance(status, int) or isinstance(status, bool):
        return None
    if status in (404, 410):
        return Kind.NOT_FOUND
    if status in (401, 403):
        return Kind.DENIED
    if status in (408, 429, 502, 503, 504):
        return Kind.UNAVAILABLE
    return None


def _loaded(module: str, *names: str) -> tuple[type, ...]:
    """Classes of an already imported module (none when it is not imported or lacks them)."""
    mod = sys.modules.get(module)
    return tuple(c for c in (getattr(mod, n, None) for n in names) if isinstance(c, type))


def _is(exc: BaseException, module: str, *names: str) -> bool:
    classes = _loaded(module, *names)
    return bool(classes) and isinstance(exc, classes)


# --------------------------------------------------------------------------- one function per library

_MLFLOW_CODES = {
    "RESOURCE_DOES_NOT_EXIST": Kind.NOT_FOUND, "NOT_FOUND": Kind.NOT_FOUND, "ENDPOINT_NOT_FOUND": Kind.NOT_FOUND,
    "PERMISSION_DENIED": Kind.DENIED, "UNAUTHENTICATED": Kind.DENIED, "CUSTOMER_UNAUTHORIZED": Kind.DENIED,
    "TEMPORARILY_UNAVAILABLE": Kind.UNAVAILABLE, "DEADLINE_EXCEEDED": Kind.UNAVAILABLE,
    "REQUEST_LIMIT_EXCEEDED": Kind.UNAVAILABLE, "RESOURCE_EXHAUSTED": Kind.UNAVAILABLE,
}


def mlflow_kind(exc: BaseException) -> Kind | None:
    """``MlflowException.error_code`` (the protobuf name; REST errors carry the server's code or the
    HTTP status mapped to one). INTERNAL_ERROR says nothing: the cause further down may."""
    if _is(exc, "mlflow.exceptions", "MlflowException"):
        return _MLFLOW_CODES.get(str(getattr(exc, "error_code", "")))
    return None


def requests_kind(exc: BaseException) -> Kind | None:
    if _is(exc, "requests.exceptions", "HTTPError"):
        return status_kind(getattr(getattr(exc, "response", None), "status_code", None))
    if _is(exc, "requests.exceptions", "ConnectionError", "Timeout", "RetryError"):
        return Kind.UNAVAILABLE
    if _is(exc, "urllib3.exceptions", "MaxRetryError", "NewConnectionError", "TimeoutError", "ProtocolError"):
        return Kind.UNAVAILABLE
    return None


def httpx_kind(exc: BaseException) -> Kind | None:
    if _is(exc, "httpx", "HTTPStatusError"):
        return status_kind(exc.response.status_code)  # type: ignore[attr-defined]
    if _is(exc, "httpx", "TransportError"):  # connect/read errors and time-outs
        return Kind.UNAVAILABLE
    return None


def google_kind(exc: BaseException) -> Kind | None:
    """google-api-core's exception classes (google-cloud-storage raises them) and google-auth's."""
    if _is(exc, "google.api_core.exceptions", "NotFound"):
        return Kind.NOT_FOUND
    if _is(exc, "google.api_core.exceptions", "Unauthorized", "Forbidden"):
        return Kind.DENIED
    if _is(exc, "google.api_core.exceptions", "ServiceUnavailable", "GatewayTimeout", "BadGateway",
           "TooManyRequests", "RetryError"):
        return Kind.UNAVAILABLE
    if _is(exc, "google.api_core.exceptions", "GoogleAPICallError"):
        return status_kind(getattr(exc, "code", None))
    if _is(exc, "google.auth.exceptions", "DefaultCredentialsError", "RefreshError"):
        return Kind.DENIED
    if _is(exc, "google.auth.exceptions", "TransportError"):
        return Kind.UNAVAILABLE
    return None


_S3_NOT_FOUND = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404"})
_S3_DENIED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                        "InvalidToken", "AllAccessDisabled", "403", "401"})
_S3_UNAVAILABLE = frozenset({"SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError", "503"})


def botocore_kind(exc: BaseException) -> Kind | None:
    """botocore's classes (boto3 raises them): a ClientError's error Code, else its HTTP status."""
    if _is(exc, "botocore.exceptions", "ClientError"):
        response: dict[str, Any] = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        if code in _S3_NOT_FOUND:
            return Kind.NOT_FOUND
        if code in _S3_DENIED:
            return Kind.DENIED
        if code in _S3_UNAVAILABLE:
            return Kind.UNAVAILABLE
        return status_kind(response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    if _is(exc, "botocore.exceptions", "NoCredentialsError", "PartialCredentialsError"):
        return Kind.DENIED
    if _is(exc, "botocore.exceptions", "ConnectionError", "HTTPClientError"):  # endpoint, time-outs, closed
        return Kind.UNAVAILABLE
    return None


def docker_kind(exc: BaseException) -> Kind | None:
    """docker SDK: ``NotFound``/``ImageNotFound`` classes, else an ``APIError``'s status code."""
    if _is(exc, "docker.errors", "NotFound"):
        return Kind.NOT_FOUND
    if _is(exc, "docker.errors", "APIError"):
        return status_kind(getattr(exc, "status_code", None))
    return None


def jenkins_kind(exc: BaseException) -> Kind | None:
    """python-jenkins: its NotFoundException and TimeoutException (the HTTP status of anything else
    is on the requests HTTPError it was raised while handling)."""
    if _is(exc, "jenkins", "NotFoundException"):
        return Kind.NOT_FOUND
    if _is(exc, "jenkins", "TimeoutException"):
        return Kind.UNAVAILABLE
    return None


def os_kind(exc: BaseException) -> Kind | None:
    """The standard library's OSError family (sockets, files) and a missing module."""
    if isinstance(exc, ModuleNotFoundError):
        return Kind.MISSING_DEPENDENCY
    if isinstance(exc, FileNotFoundError):
        return Kind.NOT_FOUND
    if isinstance(exc, PermissionError):
        return Kind.DENIED
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Kind.UNAVAILABLE
    import socket

    if isinstance(exc, socket.gaierror):  # a host name that does not resolve
        return Kind.UNAVAILABLE
    return None


CLASSIFIERS: tuple[Callable[[BaseException], Kind | None], ...] = (
    os_kind, mlflow_kind, botocore_kind, google_kind, requests_kind, httpx_kind, docker_kind, jenkins_kind,
)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or during, outermost first (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify(exc: BaseException) -> Kind | None:
    """The first kind any exception in the chain names; None when none does (a bug, or new to us)."""
    for link in chain(exc):
        for classifier in CLASSIFIERS:
            kind = classifier(link)
            if kind is not None:
                return kind
    return None


def missing_module(exc: BaseException) -> ModuleNotFoundError | None:
    """The ModuleNotFoundError in the chain, if a missing module is what went wrong."""
    return next((link for link in chain(exc) if isinstance(link, ModuleNotFoundError)), None)
