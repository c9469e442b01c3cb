"""``python -m gateway``: serve the gateway with uvicorn on a SO_REUSEPORT socket.

Environment:
  HOME_MLOPS_GATEWAY_SPEC       path of gateway-spec.json (default: next to the package)
  HOME_MLOPS_GATEWAY_HOST       the address to bind, default 0.0.0.0 (the deployer passes 127.0.0.1 for candidates)
  HOME_MLOPS_DEPLOY_ID          echoed as X-Home-Mlops-Deploy-Id on every response (1-128 of [A-Za-z0-9._:-])
  HOME_MLOPS_GATEWAY_PORT       default 8000
  HOME_MLOPS_GATEWAY_WORKERS    default 1
  HOME_MLOPS_GATEWAY_EXTRA      module name (e.g. ``extra``) next to the package with ``extend(app, spec)``
  HOME_MLOPS_GATEWAY_GRACEFUL_TIMEOUT  seconds to drain in-flight requests on SIGTERM (default 30)
  HOME_MLOPS_GATEWAY_LOG_LEVEL  default info;  HOME_MLOPS_GATEWAY_ACCESS_LOG=1 turns the access log on
  HOME_MLOPS_MODEL_DIR          set (the standalone server image, mode fastapi): the model is loaded in this
                                process (inprocess.py); unset: predictions come from the BentoML server
  plus the settings read by settings.py (HOME_MLOPS_UPSTREAM_URL, HOME_MLOPS_MAX_IN_FLIGHT, ...).

The listening socket is made here with SO_REUSEADDR and SO_REUSEPORT, so a new
gateway can bind the port while the old one still listens; the old one stops
accepting on SIGTERM and finishes its in-flight requests (zero-downtime switch).
"""
from __future__ import annotations

import importlib
import inspect
import os
import socket
import sys
import tempfile
from pathlib import Path

ENV_SPEC = "HOME_MLOPS_GATEWAY_SPEC"
ENV_HOST = "HOME_MLOPS_GATEWAY_HOST"
ENV_PORT = "HOME_MLOPS_GATEWAY_PORT"
ENV_WORKERS = "HOME_MLOPS_GATEWAY_WORKERS"
ENV_EXTRA = "HOME_MLOPS_GATEWAY_EXTRA"
ENV_GRACEFUL = "HOME_MLOPS_GATEWAY_GRACEFUL_TIMEOUT"
ENV_LOG_LEVEL = "HOME_MLOPS_GATEWAY_LOG_LEVEL"
ENV_ACCESS_LOG = "HOME_MLOPS_GATEWAY_ACCESS_LOG"
ENV_MODEL_DIR = "HOME_MLOPS_MODEL_DIR"

PACKAGE = __package__ or "gateway"
PACKAGE_DIR = Path(__file__).resolve().parent


def spec_path() -> Path:
    """gateway-spec.json: from the env, else next to the package, else inside it."""
    from .spec import SPEC_FILENAME

    explicit = os.environ.get(ENV_SPEC, "").strip()
    if explicit:
        return Path(explicit)
    beside = PACKAGE_DIR.parent / SPEC_FILENAME
    return beside if beside.exists() else PACKAGE_DIR / SPEC_FILENAME


def apply_extra(app, spec) -> None:
    """Call ``extend(app, spec)`` from the per-app module named by HOME_MLOPS_GATEWAY_EXTRA."""
    name = os.environ.get(ENV_EXTRA, "").strip()
    if not name:
        return
    parent = str(PACKAGE_DIR.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    module = importlib.import_module(name)
    extend = getattr(module, "extend", None)
    if not callable(extend):
        raise RuntimeError(f"{ENV_EXTRA}={name}: module {module.__file__} has no function extend(app, spec)")
    extend(app, spec)


def build_app():
    """The ASGI app uvicorn serves (an app factory, so workers > 1 can import it)."""
    from .spec import GatewaySpec

    path = spec_path()
    if not path.is_file():
        raise RuntimeError(f"gateway spec not found at {path}: set {ENV_SPEC} to the gateway-spec.json path")
    spec = GatewaySpec.load(path)
    app_module = importlib.import_module(f"{PACKAGE}.app")  # may be a per-app replacement app.py
    if os.environ.get(ENV_MODEL_DIR, "").strip():  # the standalone server: the model in this process
        inprocess = importlib.import_module(f"{PACKAGE}.inprocess")
        app = app_module.create_app(spec, backend=inprocess.InProcessBackend.from_env(spec))
    else:
        app = app_module.create_app(spec)
    apply_extra(app, spec)
    return app


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A bound TCP socket with SO_REUSEADDR + SO_REUSEPORT set before bind, *not yet listening*:
    uvicorn listens on it (``backlog``: its config's) only after the app's startup (the model load
    in the standalone server), so a new front door joins the port's SO_REUSEPORT group once it can
    answer; until then the old one gets every connection (seen: a 10 s client time-out otherwise)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (without it every response stalls ~40 ms on Nagle + delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


# A connection accepted a moment before SIGTERM may still have its request unread in the
# socket buffer; uvicorn's shutdown closes every connection with no request in progress at
# once, and closing a socket with unread data sends a reset (seen: 1 in ~3000 requests during
# a switch under load). So stop accepting first, read what is already there for a moment, then
# shut down as uvicorn does (in-flight requests drain, idle keep-alive connections close).
DRAIN_SECONDS = 0.5


def draining_server(config):
    import asyncio

    import uvicorn

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets=None):
            for server in self.servers:
                server.close()
            for sock in sockets or []:
                sock.close()
            await asyncio.sleep(DRAIN_SECONDS)
            await super().shutdown(sockets)

    return DrainingServer(config)


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None


def main() -> int:
    import uvicorn

    host = os.environ.get(ENV_HOST, "").strip() or "0.0.0.0"
    port = _int_env(ENV_PORT, 8000)
    workers = max(1, _int_env(ENV_WORKERS, 1))
    graceful = _int_env(ENV_GRACEFUL, 30)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # one /metrics over all workers: prometheus_client's multiprocess mode
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")

    # fail fast (before binding) when the spec, a setting or the app cannot be loaded
    try:
        build_app()
    except (RuntimeError, ValueError) as exc:  # a bad setting says which one; no traceback
        print(f"gateway: {exc}", file=sys.stderr)
        return 2

    config = uvicorn.Config(
        f"{PACKAGE}.__main__:build_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        lifespan="on",
        log_level=os.environ.get(ENV_LOG_LEVEL, "info").lower(),
        access_log=os.environ.get(ENV_ACCESS_LOG, "").lower() in ("1", "true", "yes"),
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=graceful,
    )
    sock = bind_socket(host, port)
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            kwargs = {"sockets": [sock]}
            if "target" in inspect.signature(Multiprocess.__init__).parameters:  # older uvicorn
                kwargs["target"] = uvicorn.Server(config).run
            Multiprocess(config, **kwargs).run()
        else:
            draining_server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
