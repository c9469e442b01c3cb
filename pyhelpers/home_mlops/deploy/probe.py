"""Probes of a deploy, always through 127.0.0.1: readiness, the smoke test, the new public gateway.

The new public gateway is told its deploy id (HOME_MLOPS_DEPLOY_ID) and returns it
in the X-Home-Mlops-Deploy-Id header, so "the new gateway answers on the public
port" is seen over HTTP: no /proc reading, so it holds for a non-root user and
from another PID namespace.
"""
from __future__ import annotations

import time
from typing import Any

from home_mlops import console, readiness
from home_mlops.deploy.specs import LOOPBACK
from home_mlops.errors import DeployFailed
from home_mlops.gateway.envelope import row_count
from home_mlops.readiness import loopback_client
from home_mlops.redact import scrub

DEPLOY_ID_HEADER = "X-Home-Mlops-Deploy-Id"
SMOKE_BURST = 16  # fresh connections to the public port that must all succeed before the old gateway stops
KEEP_SERVING = "the previous deployment is still serving"


# fresh connection per request, no proxies from the environment (loopback only)
http_client = loopback_client


def log_tail(container, lines: int = 15, secrets_: list[str] | None = None) -> str:
    try:
        raw = container.logs(tail=lines).decode("utf-8", "replace").rstrip()
    except Exception:  # noqa: BLE001 - best effort, the container may be gone
        return "(no log available)"
    raw = scrub(raw, secrets_ or [])
    return "\n".join("    | " + line[:300] for line in raw.splitlines()[-lines:]) or "    | (empty log)"


def container_state(container) -> tuple[str, str | None]:
    try:
        container.reload()
    except Exception:  # noqa: BLE001
        return "gone", None
    st = container.attrs.get("State", {})
    return st.get("Status", "unknown"), (st.get("Health") or {}).get("Status")


def fail_if_stopped(container, what: str, secrets_: list[str], hint: str = KEEP_SERVING) -> None:
    """A container that exited (or is crash-looping) fails the deploy with its last log lines."""
    status, _ = container_state(container)
    if status in ("exited", "dead", "gone", "restarting"):
        raise DeployFailed(
            f"{what} (state {status}); its last log lines:\n" + log_tail(container, secrets_=secrets_), hint=hint
        )


def wait_ready(container, url: str, deadline: float, what: str, secrets_: list[str]) -> None:
    """Poll ``url`` until 200; fail early if the container exits."""
    try:
        readiness.wait_ready(url, deadline, stopped=lambda: fail_if_stopped(
            container, f"{what} ({container.name}) stopped before it was ready", secrets_,
            f"fix the image for this run; {KEEP_SERVING}"))
    except readiness.NotReady as exc:
        raise DeployFailed(
            f"{what} ({container.name}) was not ready at {url} in time (last: {exc.last}); its last log lines:\n"
            + log_tail(container, secrets_=secrets_),
            hint="if the model is slow to load, raise --ready-timeout (HOME_MLOPS_READY_TIMEOUT, or the "
            f"app's ready_timeout in jobs/projects.yaml); otherwise fix the image; {KEEP_SERVING}",
        ) from None


# how many predictions the smoke test expects: the front door's own scoring-envelope parser
count_records = row_count


def smoke(url: str, payload: dict, containers: list, secrets_: list[str]) -> None:
    expected = count_records(payload)
    with http_client() as http:
        try:
            resp = http.post(url, json=payload, timeout=30)
        except Exception as exc:  # noqa: BLE001
            raise DeployFailed(f"smoke test POST {url} failed: {type(exc).__name__}: {exc}") from None
    problem = None
    body: Any = None
    if resp.status_code != 200:
        problem = f"answered HTTP {resp.status_code}: {scrub(resp.text[:300], secrets_)}"
    else:
        try:
            body = resp.json()
        except ValueError:
            problem = "answered something that is not JSON"
        else:
            # a FastAPI front door wraps them ({"predictions": [...]}); BentoML (mode bento) answers the list
            preds = body if isinstance(body, list) else body.get("predictions") if isinstance(body, dict) else None
            if not isinstance(preds, list):
                problem = "answered JSON without a 'predictions' list"
            elif expected is not None and len(preds) != expected:
                problem = f"answered {len(preds)} predictions for {expected} input records"
    if problem:
        logs = "\n".join(f"  {c.name}:\n{log_tail(c, secrets_=secrets_)}" for c in containers)
        raise DeployFailed(
            f"smoke test of the new pair failed: POST /predict with the model's input example {problem}; "
            f"last log lines:\n{logs}",
            "HTTP 200 with one prediction per input record",
            f"fix the model or serving code for this run; {KEEP_SERVING}",
        )


def _public_timeout(container, port: int, what: str, secrets_: list[str]) -> DeployFailed:
    return DeployFailed(f"{what} on port {port}; the new gateway's last log lines:\n"
                        + log_tail(container, secrets_=secrets_), hint=KEEP_SERVING)


def sends_deploy_id(port: int) -> bool | None:
    """Whether what serves ``port`` now returns a deploy id header; None when nothing answers."""
    try:
        with http_client() as http:
            return DEPLOY_ID_HEADER in http.get(f"http://{LOOPBACK}:{port}/readyz", timeout=2).headers
    except Exception:  # noqa: BLE001
        return None


def verify_public(container, port: int, deploy_id: str, deadline: float, secrets_: list[str],
                  old_sends_id: bool | None) -> None:
    """The new public gateway answers on ``port``, then a burst of fresh connections all succeed
    (with two SO_REUSEPORT listeners they spread over both, so a stuck new gateway fails here
    before the old one is stopped).

    "The new one answers" is its deploy id coming back. A gateway image from before deploy ids
    (a rollback to an old build) answers without the header: that proves the new one answered
    when nothing else answers (``old_sends_id`` None) or the old one does send ids; when neither
    sends one, the new container's own Docker health check has to pass instead.
    """
    url = f"http://{LOOPBACK}:{port}/readyz"
    with http_client() as http:
        while True:
            fail_if_stopped(container, f"the new public gateway ({container.name}) stopped", secrets_)
            seen = "no answer"
            try:
                resp = http.get(url)
                if resp.status_code == 200:
                    seen = resp.headers.get(DEPLOY_ID_HEADER)
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if seen == deploy_id:
                break
            if seen is None and old_sends_id is not False:
                break
            if seen is None and container_state(container)[1] == "healthy":
                console.warn(f"neither gateway returns {DEPLOY_ID_HEADER} (images from before deploy ids): "
                             "the new one was checked by its own health check")
                break
            if time.monotonic() > deadline:
                raise _public_timeout(container, port, f"the new public gateway never answered with deploy id "
                                      f"{deploy_id}", secrets_)
            time.sleep(0.05)
        for _ in range(SMOKE_BURST):
            while True:
                try:
                    if http.get(url).status_code == 200:
                        break
                except Exception:  # noqa: BLE001
                    pass
                if time.monotonic() > deadline:
                    raise _public_timeout(container, port, "/readyz did not answer after the new gateway started",
                                          secrets_)
                time.sleep(0.1)
