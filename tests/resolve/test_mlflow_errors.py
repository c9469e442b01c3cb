"""Errors by type: what MLflow, requests, google-api-core, botocore and docker raise, as the CLI's errors.

The exceptions are the libraries' own, raised by the libraries where that runs here
(a real MLflow store, a real closed port, a real HTTP server answering 503/403), and
built as the library builds them otherwise. Never classified by message: the issue's
two examples (a run id containing "503", ModuleNotFoundError read as "not found") are
tests here.
"""
from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest

from conftest import cli_env, run_cli
from home_mlops.error_kinds import Kind, classify, status_kind
from home_mlops.errors import ExitCode
from home_mlops.extras import MissingDependency, missing_dependency, require
from home_mlops.resolve.mlflow_errors import MLFLOW_HTTP_DEFAULTS, translate, translate_errors

RUN_503 = "00000000000000000000000000000503"
CLOSED_PORT = 19603  # this helper's range; nothing listens there


def raised(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("expected an exception")


# --------------------------------------------------------------------------- MLflow, for real


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_unknown_run_whose_id_contains_503_is_not_found(sqlite_uri):
    from mlflow.tracking import MlflowClient

    exc = raised(lambda: MlflowClient(tracking_uri=sqlite_uri).get_run(RUN_503))
    assert "503" in str(exc)  # the message says 503; the error code says RESOURCE_DOES_NOT_EXIST
    assert classify(exc) is Kind.NOT_FOUND
    error = translate(exc, "tracking server")
    assert error.code == ExitCode.NOT_FOUND


def test_cli_unknown_run_whose_id_contains_503_exits_3(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    proc = run_cli(["resolve", "--experiment-id", "0", "--run-id", RUN_503], cli_env(state), timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert RUN_503 in proc.stderr and "did not answer" not in proc.stderr and "Traceback" not in proc.stderr


def test_closed_port_is_unavailable_through_mlflows_wrapping():
    """MLflow raises MlflowException(INTERNAL_ERROR) while handling requests' ConnectionError: the chain tells."""
    from mlflow.tracking import MlflowClient

    exc = None
    try:
        with translate_errors(f"tracking server http://127.0.0.1:{CLOSED_PORT}"):
            MlflowClient(tracking_uri=f"http://127.0.0.1:{CLOSED_PORT}").get_run(RUN_503)
    except Exception as caught:  # noqa: BLE001
        exc = caught
    assert exc is not None and exc.code == ExitCode.UNAVAILABLE, exc


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 503

    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"<html>nope</html>"
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def answering_server():
    servers = []

    def start(status: int) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 19604 + len(servers)), _Answer)
        server.status = status  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status,code,words", [
    (503, ExitCode.UNAVAILABLE, "did not answer"),
    (403, ExitCode.UNAVAILABLE, "refused access"),
    (404, ExitCode.NOT_FOUND, "not found"),
])
def test_tracking_server_http_status_by_code(answering_server, status, code, words, monkeypatch):
    """A real server answering non-JSON with a status: MLflow's error code / requests' retry error say which."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    url = answering_server(status)
    with pytest.raises(Exception) as info:
        with translate_errors(f"tracking server {url}"):
            MlflowClient(tracking_uri=url).get_run("abc")
    assert info.value.code == code, info.value
    assert words in str(info.value)


def test_translate_errors_bounds_mlflow_retries_only_inside(monkeypatch):
    import os

    for name in MLFLOW_HTTP_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # the user's own value wins
    with translate_errors("x"):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


# --------------------------------------------------------------------------- a missing optional dependency


def test_missing_botocore_is_its_own_error_naming_the_extra():
    """The issue's example: 'No module named botocore' used to read as 'not found' (exit 3)."""
    exc = ModuleNotFoundError("No module named 'botocore'", name="botocore")
    assert classify(exc) is Kind.MISSING_DEPENDENCY
    error = translate(exc, "NAS s3://bucket/mlruns")
    assert isinstance(error, MissingDependency) and error.code == ExitCode.BAD_INPUT
    assert "[s3]" in str(error) and "not found" not in str(error)


def test_missing_module_inside_mlflows_wrapper_is_found_in_the_chain():
    from mlflow.exceptions import MlflowException

    def load():
        try:
            import home_mlops_no_such_module  # noqa: F401  (the import is the test)
        except ModuleNotFoundError as exc:
            raise MlflowException("Failed to load the artifact repository") from exc

    error = translate(raised(load), "NAS gs://b")
    assert isinstance(error, MissingDependency) and "home_mlops_no_such_module" in str(error)


@pytest.mark.parametrize("module,extra", [("google.cloud.storage", "gcs"), ("jenkins", "jenkins"), ("boto3", "s3")])
def test_each_optional_module_names_its_extra(module, extra):
    error = missing_dependency(ModuleNotFoundError(f"No module named {module!r}", name=module), "this")
    assert f"[{extra}]" in str(error) and f"'.[{extra}]'" in error.hint


def test_require_imports_or_names_the_extra():
    assert require("json", "x").dumps([]) == "[]"
    with pytest.raises(MissingDependency) as info:
        require("home_mlops_no_such_module", "the thing")
    assert info.value.code == ExitCode.BAD_INPUT and "the thing" in str(info.value)


# --------------------------------------------------------------------------- other libraries' classes and codes


def test_status_codes():
    assert [status_kind(s) for s in (404, 410, 401, 403, 429, 503, 504, 400, 500, "503", True)] == [
        Kind.NOT_FOUND, Kind.NOT_FOUND, Kind.DENIED, Kind.DENIED, Kind.UNAVAILABLE, Kind.UNAVAILABLE,
        Kind.UNAVAILABLE, None, None, None, None]


def test_a_message_alone_never_decides():
    for text in ("503 Service Unavailable", "not found", "permission denied", "connection refused"):
        assert classify(RuntimeError(text)) is None, text
        assert translate(RuntimeError(text), "x").code == ExitCode.INTERNAL


def test_google_api_core_classes():
    from google.api_core import exceptions as g

    assert classify(g.NotFound("no bucket")) is Kind.NOT_FOUND
    assert classify(g.Forbidden("403 ... does not exist")) is Kind.DENIED  # the class, not the words
    assert classify(g.ServiceUnavailable("x")) is Kind.UNAVAILABLE
    assert classify(g.TooManyRequests("x")) is Kind.UNAVAILABLE
    assert classify(g.BadRequest("404 in a message")) is None


def test_botocore_classes_and_codes():
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "The key does not exist"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2")

    assert classify(client_error("NoSuchBucket", 404)) is Kind.NOT_FOUND
    assert classify(client_error("InvalidAccessKeyId", 403)) is Kind.DENIED
    assert classify(client_error("SlowDown", 503)) is Kind.UNAVAILABLE
    assert classify(client_error("SomethingNew", 401)) is Kind.DENIED  # unknown code: the status decides
    assert classify(client_error("InvalidArgument", 400)) is None
    assert classify(EndpointConnectionError(endpoint_url="http://127.0.0.1:1")) is Kind.UNAVAILABLE
    assert classify(NoCredentialsError()) is Kind.DENIED


def test_requests_and_httpx_for_real():
    import httpx
    import requests

    assert classify(raised(lambda: requests.get(f"http://127.0.0.1:{CLOSED_PORT}/", timeout=2))) is Kind.UNAVAILABLE
    assert classify(raised(lambda: httpx.get(f"http://127.0.0.1:{CLOSED_PORT}/", timeout=2))) is Kind.UNAVAILABLE
    response = httpx.Response(404, request=httpx.Request("GET", "http://127.0.0.1/"))
    assert classify(raised(response.raise_for_status)) is Kind.NOT_FOUND


def test_docker_api_error_status():
    import docker.errors
    import requests

    def api_error(status: int) -> docker.errors.APIError:
        response = requests.Response()
        response.status_code = status
        return docker.errors.APIError("manifest unknown: 503", response=response)

    assert classify(api_error(404)) is Kind.NOT_FOUND
    assert classify(api_error(401)) is Kind.DENIED
    assert classify(api_error(500)) is None  # "503" in the message says nothing
    assert classify(docker.errors.ImageNotFound("x")) is Kind.NOT_FOUND


def test_files_and_sockets():
    assert classify(raised(lambda: Path("/nonexistent/hmt-s").read_text())) is Kind.NOT_FOUND
    assert classify(raised(lambda: socket.create_connection(("127.0.0.1", CLOSED_PORT), timeout=2))) is Kind.UNAVAILABLE
