"""python-jenkins errors by type: a real client against a real HTTP server on 127.0.0.1 (port 19606).

python-jenkins folds the status into JenkinsException's text; the status is in the exception
chain (requests' HTTPError), and that is what decides, never the text: a job named
``hmt-s-401`` that does not exist is "not found", not "refused".
"""
from __future__ import annotations

import http.server
import threading

import pytest

from home_mlops.errors import ExitCode
from home_mlops.jenkins.client import JenkinsConfig, server, translate

PORT = 19606


class _Jenkins(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        status = 401 if self.headers.get("Authorization", "").endswith("d3Jvbmc=") else 404  # "...:wrong"
        if self.path.startswith("/crumbIssuer"):
            status = 404
        body = b"nope"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def jenkins_url():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), _Jenkins)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{PORT}/"
    httpd.shutdown()
    httpd.server_close()


def error_of(config: JenkinsConfig, job: str):
    try:
        server(config, timeout=5).get_job_info(job)
    except Exception as exc:  # noqa: BLE001
        return translate(exc, config)
    raise AssertionError("expected an error")


def test_missing_job_whose_name_holds_401_is_not_found(jenkins_url):
    config = JenkinsConfig(jenkins_url, "hmt-s", "right")
    error = error_of(config, "hmt-s-401")
    assert error.code == ExitCode.NOT_FOUND, error
    assert "refused" not in str(error)


def test_refused_token_by_status(jenkins_url):
    config = JenkinsConfig(jenkins_url, "hmt-s", "wrong")
    error = error_of(config, "hmt-s-app")
    assert error.code == ExitCode.BAD_INPUT and "refused user 'hmt-s'" in str(error), error
