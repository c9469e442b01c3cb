"""The one readiness probe (home_mlops.readiness) against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

from home_mlops import readiness


class _Server(http.server.ThreadingHTTPServer):
    """/readyz: 503 for the first ``not_ready`` requests, then 200; /v2/: 401 (a registry asking for a login)."""

    def __init__(self, not_ready: int) -> None:
        self.not_ready = not_ready
        self.seen = 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server: _Server = self.server  # type: ignore[assignment]
        server.seen += 1
        if self.path == "/v2/":
            code = 401
        else:
            code = 503 if server.seen <= server.not_ready else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    made: list[_Server] = []

    def start(not_ready: int = 0) -> str:
        srv = _Server(not_ready)
        made.append(srv)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in made:
        srv.shutdown()
        srv.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_waits_through_not_ready_answers(server):
    url = server(not_ready=3) + "/readyz"
    readiness.wait_ready(url, time.monotonic() + 30, poll=0.01)
    assert readiness.answers(url)


def test_a_deadline_reports_the_last_answer(server):
    url = server(not_ready=10**6) + "/readyz"
    with pytest.raises(readiness.NotReady) as err:
        readiness.wait_ready(url, time.monotonic() + 0.2, poll=0.01)
    assert err.value.last == "HTTP 503"
    assert not readiness.answers(url)


def test_nothing_listening_is_not_ready():
    url = f"http://127.0.0.1:{_closed_port()}/readyz"
    assert not readiness.answers(url)
    with pytest.raises(readiness.NotReady) as err:
        readiness.wait_ready(url, time.monotonic() + 0.1, poll=0.01)
    assert err.value.last == "ConnectError"


def test_stopped_gives_up_before_the_deadline(server):
    url = server(not_ready=10**6) + "/readyz"
    calls = []

    def stopped() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the container exited")

    with pytest.raises(RuntimeError, match="exited"):
        readiness.wait_ready(url, time.monotonic() + 60, stopped=stopped, poll=0.01)
    assert len(calls) == 3


def test_other_ok_codes(server):
    url = server() + "/v2/"
    assert not readiness.answers(url)
    assert readiness.answers(url, ok=(200, 401))


def test_proxies_from_the_environment_are_not_used(server, monkeypatch):
    url = server() + "/readyz"
    # a proxy that does not exist: a probe that used it would never see the server
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    assert readiness.answers(url)
    readiness.wait_ready(url, time.monotonic() + 5, poll=0.01)
