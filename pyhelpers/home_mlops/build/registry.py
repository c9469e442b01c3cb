"""Push images with auth and bounded retries; never show or store a password.

Only trusted registries are contacted (trust.py): every function here that talks
to a registry checks the image's host first, before any connection.
Credentials come from REGISTRY_USER / REGISTRY_PASSWORD, else from the local
platform's generated ones when pushing to it, else from the docker config
(the SDK reads ~/.docker/config.json itself). They go to the daemon in the
request only: nothing is written to disk or to the result.
"""
from __future__ import annotations

import re

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from home_mlops import console, env, redact
from home_mlops.errors import HomeMlopsError, PushFailed
from home_mlops.build.docker_build import INPUTS_LABEL
from home_mlops.platform.host import REGISTRY_ADDR, docker_client, platform_dir, registry_credentials
from home_mlops.build.trust import require_trusted


class _Transient(Exception):
    pass


def auth_for(ref: str) -> dict | None:
    """Credentials for ref's registry. Raises BadInput (exit 2) for an untrusted registry,
    so no credential (and, since every contact starts here, no request) ever goes to one."""
    host = require_trusted(ref)
    user, password = env.REGISTRY_USER.get(), env.REGISTRY_PASSWORD.get()
    if user and password:
        return {"username": user, "password": password}
    if host == REGISTRY_ADDR and (platform_dir() / "registry" / "password").exists():
        creds = registry_credentials()
        return {"username": creds.user, "password": creds.password}
    return None


def scrub(text: str, auth: dict | None) -> str:
    """``text`` through the one scrubber, with this login's password as a known secret."""
    return redact.scrub(text, [(auth or {}).get("password")])


def remote_digest(ref: str, auth: dict | None) -> str | None:
    """The digest the registry holds for ref, or None if the tag is not there."""
    import docker.errors

    require_trusted(ref)
    client = docker_client()
    try:
        return client.api.inspect_distribution(ref, auth_config=auth)["Descriptor"]["digest"]
    except docker.errors.NotFound:  # the daemon passes on the registry's 404 (manifest unknown)
        return None
    except docker.errors.APIError as exc:
        raise PushFailed(_describe(exc, ref, auth), hint=_push_hint(str(exc), exc.status_code)) from None


def check_before_build(ref: str) -> None:
    """Ask ref's registry for the tag before a build that will push it: an untrusted host (exit 2),
    an unreachable registry or refused credentials (exit 5) then fail in seconds, not after the build.
    ``push`` asks again after the build: someone may push the tag while it runs."""
    console.step(f"checking the registry for {ref} before building")
    remote_digest(ref, auth_for(ref))


def remote_inputs_digest(ref: str, auth: dict | None) -> str | None:
    """Pull the tag as it is in the registry and read our inputs label."""
    require_trusted(ref)
    client = docker_client()
    repo, tag = ref.rsplit(":", 1)
    try:
        image = client.images.pull(repo, tag=tag, auth_config=auth)
    except Exception as exc:  # noqa: BLE001
        raise PushFailed(_describe(exc, ref, auth)) from None
    return (image.labels or {}).get(INPUTS_LABEL)


def push(ref: str, local_labels: dict[str, str], *, force: bool = False) -> str:
    """Push ref and return its digest. A tag that exists with other content is refused
    unless force; the same content already there is not pushed again."""
    auth = auth_for(ref)
    existing = remote_digest(ref, auth)
    if existing:
        client = docker_client()
        local = client.images.get(ref)
        if any(d.endswith(existing) for d in local.attrs.get("RepoDigests", [])):
            console.ok(f"{ref} is already in the registry ({existing})")
            return existing
        if not force:
            ours = local_labels.get(INPUTS_LABEL)
            theirs = remote_inputs_digest(ref, auth)
            # The pull above moved the tag to the registry's image; put ours back.
            client.images.get(local.id).tag(*ref.rsplit(":", 1))
            if ours and ours == theirs:
                console.ok(f"{ref} in the registry was built from the same inputs; not pushing again")
                return existing
            raise PushFailed(
                f"{ref} already exists in the registry with different content ({existing})",
                "a tag that is new, or that holds the same build",
                "pass --force to overwrite it, or train a new run",
            )
        console.warn(f"overwriting {ref} (--force)")
    return _push_with_retries(ref, auth)


@retry(
    retry=retry_if_exception_type(_Transient),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=1, min=1, max=8),
    reraise=True,
)
def _push_once(ref: str, auth: dict | None) -> str:
    client = docker_client()
    repo, tag = ref.rsplit(":", 1)
    digest = None
    for chunk in client.api.push(repo, tag=tag, auth_config=auth, stream=True, decode=True):
        if "error" in chunk:
            text = chunk["error"]
            if _is_transient(text):
                raise _Transient(scrub(text, auth))
            raise PushFailed(f"push of {ref} refused: {scrub(text, auth)}", hint=_push_hint(text))
        aux = chunk.get("aux") or {}
        digest = aux.get("Digest", digest)
    if not digest:
        raise PushFailed(f"push of {ref} finished without a digest")
    return digest


def _push_with_retries(ref: str, auth: dict | None) -> str:
    require_trusted(ref)
    console.step(f"pushing {ref}")
    try:
        digest = _push_once(ref, auth)
    except _Transient as exc:
        raise PushFailed(f"push of {ref} failed after retries: {exc}", hint=_push_hint(str(exc))) from None
    except HomeMlopsError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PushFailed(_describe(exc, ref, auth), hint=_push_hint(str(exc), getattr(exc, "status_code", None))) from None
    console.ok(f"pushed {ref} ({digest})")
    return digest


# What went wrong, from structured information first. The daemon passes a registry's
# answer on as the API status when it has one (404 manifest unknown, 401 refused
# credentials); errors inside a push stream and connection failures reach us only as
# the daemon's message, which carries the registry's status as "HTTP status: NNN" and
# Go's network errors in fixed words.
_HTTP_STATUS = re.compile(r"HTTP status: ([1-5][0-9]{2})\b")
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_UNREACHABLE = ("connection refused", "no such host", "timeout", "connection reset by peer")
_REFUSED_CREDENTIALS = ("unauthorized", "authentication required", "no basic auth credentials", "denied")


def _registry_status(text: str, status: int | None = None) -> int | None:
    match = _HTTP_STATUS.search(text)
    return int(match[1]) if match else status


def _unreachable(text: str) -> bool:
    lowered = text.lower()
    return any(s in lowered for s in _UNREACHABLE) or lowered.rstrip().endswith(": eof")


def _is_transient(text: str) -> bool:
    status = _registry_status(text)
    return status in _RETRY_STATUSES if status else _unreachable(text)


def _describe(exc: Exception, ref: str, auth: dict | None) -> str:
    return f"registry error for {ref}: {scrub(str(exc), auth)[:300]}"


def _push_hint(text: str, status: int | None = None) -> str:
    status = _registry_status(text, status)
    if status in (401, 403) or any(s in text.lower() for s in _REFUSED_CREDENTIALS):
        return "check REGISTRY_USER / REGISTRY_PASSWORD (or the Jenkins credentials id) for this registry"
    if _unreachable(text) or status in _RETRY_STATUSES:
        return "the registry is unreachable: check AR_NAME and that the registry is up (home-mlops platform up)"
    return "see the message above"
