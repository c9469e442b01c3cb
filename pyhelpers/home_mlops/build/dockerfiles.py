"""Every Dockerfile home-mlops builds, rendered from ``build/templates/`` by one Jinja environment.

As BentoML renders its own (``_internal/container/generate.py``): one template per
image (``bento``, ``gateway``, ``server``), shared pieces in ``_macros.j2`` (the
healthcheck every image runs, the venv install from local wheels), and a
``bash_quote`` filter for any value that lands in a shell word. Values that land
in exec-form instructions (``CMD``, ``HEALTHCHECK``) go through ``tojson``.
"""
from __future__ import annotations

import json
import re
import shlex
from functools import lru_cache
from typing import Any, Mapping

import jinja2

from home_mlops.errors import BadInput

_BASE_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


def bash_quote(value: Any) -> str:
    """One shell word whatever ``value`` holds (newlines included)."""
    return shlex.quote(str(value))


def exec_form(*argv: str) -> str:
    """A JSON array for CMD/HEALTHCHECK: no shell ever parses it."""
    return json.dumps(list(argv))


def check_base_image(base_image: str) -> str:
    if not _BASE_IMAGE.match(base_image or ""):
        raise BadInput(f"base image {base_image!r} is not an image reference",
                       "e.g. home-mlops/python-base:3.11 (a local image with python3 and venv)",
                       "pass --base-image with an image reference")
    return base_image


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("home_mlops.build", "templates"),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, never an empty line
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["bash_quote"] = bash_quote
    env.filters["exec_form"] = lambda argv: exec_form(*argv)
    return env


def render(template: str, context: Mapping[str, Any]) -> str:
    """``template`` (e.g. ``server.Dockerfile.j2``) rendered with ``context``; the base image is checked."""
    if "base_image" in context:
        check_base_image(context["base_image"])
    return environment().get_template(template).render(**context)
