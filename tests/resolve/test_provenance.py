"""Write-back to MLflow never holds a finished deploy hostage: a tracking server that fails
since the resolve gets a bounded number of tries (not MLflow's minutes of retries), then a
warning, and the command goes on."""
from __future__ import annotations

import http.server
import threading

from home_mlops.resolve import provenance
from home_mlops.resolve.mlflow_errors import MLFLOW_HTTP_DEFAULTS


class _Failing(http.server.BaseHTTPRequestHandler):
    hits = 0

    def _fail(self) -> None:
        type(self).hits += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PATCH = _fail

    def log_message(self, *args) -> None:  # quiet
        pass


def test_write_back_to_a_failing_tracking_server_is_bounded_and_only_warns(monkeypatch):
    for name in MLFLOW_HTTP_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # the count matters here, not the waits
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = provenance.Target(tracking_uri=f"http://127.0.0.1:{server.server_port}", run_id="a" * 32,
                                   model_id="", model_name="", version="")
        assert provenance.write(target, {"deploy.app": "hmt-prov"}) is False
    finally:
        server.shutdown()
        server.server_close()
    # the first failing call stops the write-back; MLflow's own default would try 8 times
    assert 1 <= _Failing.hits <= int(MLFLOW_HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) + 1
