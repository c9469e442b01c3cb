"""A stand-in Kubernetes API server on 127.0.0.1 for end-to-end runs of the real CLI: it keeps what is
applied (server-side apply = PATCH of the whole object), reports every Deployment as rolled out, lists
by label selector, deletes, and answers the service proxy (200 unless a test says otherwise). Only
the API server is a stand-in: the CLI, the `kubernetes` client, MLflow and the registry are real.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

VERSION = {"major": "1", "minor": "37", "gitVersion": "v1.37.0"}
TOKEN = "hmt-k-stub-token-0123456789"
_PROXY = re.compile(r"/api/v1/namespaces/[^/]+/services/[^/]+/proxy(/.*)")


def _matches(obj: dict, selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return wanted.items() <= (obj.get("metadata", {}).get("labels") or {}).items()


class StubApi:
    def __init__(self, port: int) -> None:
        self.port = port
        self.objects: dict[str, dict] = {}  # object path -> object
        self.requests: list[dict] = []
        self.proxy_answers: dict[str, tuple[int, str]] = {}
        self.answers: dict[tuple[str, str], tuple[int, object]] = {}  # (method, path) -> a fixed answer
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "StubApi":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "stub",
            "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "stub", "user": {"token": TOKEN}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}]}))
        return path

    def answer(self, method: str, path: str, query: dict, body) -> tuple[int, object]:
        proxy = _PROXY.fullmatch(path)
        if (method, path) in self.answers:
            return self.answers[(method, path)]
        if path.rstrip("/") == "/version":
            return 200, VERSION
        if proxy:
            return self.proxy_answers.get(proxy.group(1), (200, '{"ok": true}'))
        if method == "PATCH" and isinstance(body, dict):  # server-side apply of the whole object
            stored = json.loads(json.dumps(body))
            if stored.get("kind") == "Deployment":
                replicas = stored["spec"].get("replicas", 1)
                stored["metadata"].update(generation=1, annotations={
                    **(stored["metadata"].get("annotations") or {}), "deployment.kubernetes.io/revision": "1"})
                stored["status"] = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                                    "readyReplicas": replicas, "availableReplicas": replicas}
            self.objects[path] = stored
            return 200, stored
        if method == "DELETE":
            return (200, self.objects.pop(path)) if path in self.objects else (404, {"code": 404})
        if method == "GET" and path in self.objects:
            return 200, self.objects[path]
        if method == "GET" and "labelSelector" in query:
            items = [o for p, o in sorted(self.objects.items())
                     if p.rsplit("/", 1)[0] == path and _matches(o, query["labelSelector"])]
            return 200, {"items": items}
        if method == "GET" and path.endswith(("/replicasets", "/pods")):
            return 200, {"items": []}
        return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                query = dict(parse_qsl(url.query))
                body = json.loads(raw) if raw else None
                stub.requests.append({"method": self.command, "path": url.path, "query": query, "body": body,
                                      "content_type": self.headers.get("Content-Type"),
                                      "auth": self.headers.get("Authorization")})
                status, answer = stub.answer(self.command, url.path, query, body)
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

            def log_message(self, *args) -> None:
                pass

        return Handler
