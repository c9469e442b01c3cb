"""The one secret scrubber: what a line may hold before it is printed, logged or written.

Used for every line of human output (output.clean), container logs and Docker
errors in a deploy (deploy/probe, deploy/switch), registry errors (build/registry)
and pod logs (k8s). Two passes: the known secret values (from the environment,
from a registry login) become ``***``, and anything that looks like
``password=...`` / ``token: ...`` / ``Authorization: ...`` has its value hidden,
so a secret we were never told about is still caught when a tool prints it next
to its name.
"""
from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
# Environment variables whose values are secrets: scrubbed from every line printed or written.
SECRET_NAMES = ("*PASSWORD*", "*PASSWD*", "*_TOKEN", "*_TOKEN_*", "*SECRET*", "*_API_KEY", "DOCKER_AUTH_CONFIG")
# Shorter values are not replaced: a 1-3 character "secret" would mask ordinary words and digits.
MIN_SECRET_LENGTH = 4

_NAMED_SECRET = re.compile(r"(?i)((?:password|passwd|secret|token|api[_-]?key|authorization)\s*[=:]\s*)\S+")


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the environment variables named like secrets (SECRET_NAMES)."""
    source = os.environ if environ is None else environ
    return [value for name, value in source.items()
            if value and any(fnmatch.fnmatchcase(name.upper(), pattern) for pattern in SECRET_NAMES)]


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret value and every ``<secret name>=<value>`` value masked."""
    # longest first: a secret that contains another is masked whole
    for value in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return _NAMED_SECRET.sub(r"\1" + MASK, text)
