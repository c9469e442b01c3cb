"""The one readiness probe: does a URL answer yet, and wait until it does.

Used by the deploy (a new container's /readyz before the switch), ``status``
(is the front door ready), the platform (does the registry answer) and the
tests (a container the test started). Always a loopback URL: no proxy from the
environment (``trust_env=False``, or an HTTP_PROXY would take 127.0.0.1 to the
proxy) and a fresh connection per request (a kept-alive connection would keep
talking to a listener that has since been replaced).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Collection

OK = (200,)
POLL_SECONDS = 0.2


class NotReady(Exception):
    """The URL did not answer as wanted before the deadline; ``last`` is what was seen last."""

    def __init__(self, url: str, last: str) -> None:
        super().__init__(f"{url} was not ready in time (last: {last})")
        self.url = url
        self.last = last


def loopback_client(timeout: float = 5.0, connect: float = 2.0):
    """An httpx client for loopback probes: no proxies, no kept-alive connections."""
    import httpx

    return httpx.Client(trust_env=False, timeout=httpx.Timeout(timeout, connect=connect),
                        limits=httpx.Limits(max_keepalive_connections=0))


def answers(url: str, ok: Collection[int] = OK, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers now with one of the ``ok`` status codes (anything else, or no answer: False)."""
    try:
        with loopback_client(timeout) as http:
            return http.get(url).status_code in ok
    except Exception:  # noqa: BLE001 - refused, reset, timed out, not HTTP: all "not ready"
        return False


def wait_ready(url: str, deadline: float, *, stopped: Callable[[], None] = lambda: None,
               ok: Collection[int] = OK, poll: float = POLL_SECONDS) -> None:
    """Poll ``url`` until it answers with one of ``ok`` or ``time.monotonic()`` passes ``deadline``
    (then NotReady with the last status or error seen).

    ``stopped`` runs before every try and raises to give up early: the process or container that
    should answer has exited, so waiting on would only hide its error."""
    last = "no answer yet"
    with loopback_client() as http:
        while True:
            stopped()
            try:
                resp = http.get(url)
                if resp.status_code in ok:
                    return
                last = f"HTTP {resp.status_code}"
            except Exception as exc:  # noqa: BLE001 - not listening yet
                last = type(exc).__name__
            if time.monotonic() > deadline:
                raise NotReady(url, last)
            time.sleep(poll)
