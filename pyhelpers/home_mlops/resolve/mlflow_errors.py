"""Map what MLflow and cloud clients raise onto our user-facing errors."""
from __future__ import annotations

from contextlib import contextmanager

from home_mlops.errors import HomeMlopsError, NotFound, Unavailable


@contextmanager
def translate_errors(where: str):
    try:
        yield
    except HomeMlopsError:
        raise
    except Exception as exc:  # noqa: BLE001 - every foreign error becomes a clear one
        raise _translate(exc, where) from None


def _translate(exc: Exception, where: str) -> HomeMlopsError:
    text = f"{type(exc).__name__}: {exc}"
    short = text if len(text) < 300 else text[:297] + "..."
    lowered = text.lower()
    unreachable = (
        "connection refused", "max retries exceeded", "failed to establish",
        "name or service not known", "timed out", "connectionerror", "temporary failure",
        "serviceunavailable", "503",
    )
    if any(s in lowered for s in unreachable):
        return Unavailable(
            f"{where} did not answer ({short})",
            "a reachable service",
            "check the address, that the server is running, and the network; then run again",
        )
    if "does not exist" in lowered or "notfound" in lowered or "404" in lowered or "no such file" in lowered:
        return NotFound(f"{where}: not found ({short})")
    if "permission" in lowered or "403" in lowered or "401" in lowered or "credentials" in lowered:
        return Unavailable(
            f"{where} refused access ({short})",
            "credentials that can read the artifacts",
            "check the agent's cloud credentials (GOOGLE_APPLICATION_CREDENTIALS, AWS_*)",
        )
    return HomeMlopsError(f"{where}: {short}", hint="see the message above; report it if it looks like a bug")
