"""Every environment variable home-mlops reads, declared once: name, type, default, doc.

As MLflow's ``environment_variables.py`` does: a module that wants a setting from the
environment imports its declaration here and calls ``.get()``; nothing else in the
package reads ``os.environ`` for a ``HOME_MLOPS_*`` name (a test checks this), and
``docs/settings.md`` is generated from this file. Reading is lazy: importing this module
changes nothing and reads nothing.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _text(value: str) -> str:
    return value


@dataclass(frozen=True)
class EnvVar(Generic[T]):
    """One environment variable: ``parse`` turns its text into the typed value."""

    name: str
    parse: Callable[[str], T]
    default: T | None
    doc: str

    def is_set(self) -> bool:
        return bool(os.environ.get(self.name, ""))

    def raw(self) -> str | None:
        """The text as set (None when unset or empty), for callers that validate it themselves."""
        return os.environ.get(self.name) or None

    def get(self) -> T | None:
        value = self.raw()
        return self.default if value is None else self.parse(value)


def declared() -> list[EnvVar[Any]]:
    """Every declaration in this module, in source order (for the docs table and tests)."""
    return [v for v in globals().values() if isinstance(v, EnvVar)]


# --- declarations (grouped by stage; keep one line of doc each) ---------------------------

HOME = EnvVar("HOME_MLOPS_HOME", _text, None,
              "State folder (MLflow store, model cache, BentoML home, builds); default: "
              "<checkout>/home-mlops-state or ~/.local/share/home-mlops.")

# Jenkins (home-mlops jenkins ...; docker/jenkins/start.sh writes them to $HOME_MLOPS_HOME/jenkins/jenkins.env)
JENKINS_URL = EnvVar("HOME_MLOPS_JENKINS_URL", _text, None,
                     "Jenkins for `home-mlops jenkins`, e.g. http://127.0.0.1:8080/.")
JENKINS_USER = EnvVar("HOME_MLOPS_JENKINS_USER", _text, None, "The Jenkins user `home-mlops jenkins` acts as.")
JENKINS_TOKEN = EnvVar("HOME_MLOPS_JENKINS_TOKEN", _text, None,
                       "That user's API token (never a password; only ever read from the environment).")

# The front door (read inside the gateway / standalone server image by gateway/settings.py, which
# cannot import this module: declared here for the docs table)
MAX_IN_FLIGHT = EnvVar("HOME_MLOPS_MAX_IN_FLIGHT", int, 32,
                       "Predictions a front door runs at once; more wait in its queue.")
MAX_QUEUE = EnvVar("HOME_MLOPS_MAX_QUEUE", int, 128,
                   "Requests that may wait for a prediction slot; past that a quick 503 with Retry-After.")
QUEUE_TIMEOUT = EnvVar("HOME_MLOPS_QUEUE_TIMEOUT", float, 1.0,
                       "Seconds a request may wait for a prediction slot before a 503 with Retry-After.")
