"""The raw body of a POST /predict, checked before anything parses it.

One implementation for both front doors that read a client's bytes: the FastAPI
gateway (``gateway/app.py``) and the default BentoML model server
(``templates/service.py``). Standard library only, because the bento build folder
carries this file next to service.py (the model-server image has no home_mlops
package): service.py imports it as the top-level module ``rawbody``.

- Content-Type other than JSON, or a charset other than UTF-8 -> 415;
- bytes that are not UTF-8, an empty body, malformed JSON, or JSON nested deeper
  than the limit -> 400. The depth is measured on the bytes (C loops, no
  recursion), so ``json.loads`` never sees more levels than the limit.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Callable

JSON = "application/json"
#: every byte but the five that shape JSON's nesting: quotes and brackets
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_QUOTED = re.compile(rb'"[^"]*"')


class BodyRefused(Exception):
    """A body refused before parsing: the HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_content_type(header: str | None) -> None:
    """415 unless the body is declared as JSON in UTF-8 (the only thing /predict reads)."""
    media, _, params = (header or "").partition(";")
    media = media.strip().lower()
    if media != JSON and not (media.startswith("application/") and media.endswith("+json")):
        got = f"Content-Type {_short(media, 60)!r}" if media else "no Content-Type"
        raise BodyRefused(415, f"unsupported media type: {got}; send the body as JSON with "
                               "'Content-Type: application/json'")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BodyRefused(415, f"unsupported charset {_short(value.strip(), 40)!r}: send the JSON in UTF-8")


@lru_cache(maxsize=8)
def _nesting_at_most(limit: int) -> re.Pattern[bytes]:
    """A regex matching a run of brackets nested at most ``limit`` deep.

    Built from the inside out, ``limit`` levels of ``[\\[{](?: inner )*+[\\]}]``
    with possessive repeats: the match never backtracks and stops at the first
    bracket past the limit, so a million ``[`` fail at once.
    """
    level = rb"[\[{][\]}]"
    for _ in range(limit - 1):
        level = rb"[\[{](?:" + level + rb")*+[\]}]"
    return re.compile(rb"(?:" + level + rb")*+")


def nests_deeper_than(raw: bytes, limit: int) -> bool:
    """Whether the JSON's brackets (outside strings) nest more than ``limit`` deep, or do not pair up.

    A body that opens at most ``limit`` brackets cannot nest deeper: the usual
    1-row request costs two ``count`` calls. Otherwise only quotes and brackets
    are kept (escaped backslashes and quotes dropped first, so the quotes left
    pair up), strings are dropped, and the brackets left must match the nesting regex.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # a string without brackets leaves '""': dropping adjacent quotes first keeps the rest paired
    # (at worst two strings merge into one), and the regex below runs only when a bracket is quoted
    marks = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in marks:
        marks = _QUOTED.sub(b"", marks)
    return _nesting_at_most(limit).fullmatch(marks) is None


def decode_json(raw: bytes, max_depth: int, loads: Callable[[str], Any] = json.loads) -> Any:
    """The body as JSON: UTF-8 only, nesting limited before parsing; BodyRefused(400) naming the problem.

    ``loads`` may be a faster parser (the gateway passes orjson's) that raises ValueError on bad JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRefused(400, f"the body is not valid UTF-8 (byte {exc.start}); send UTF-8 encoded JSON") from None
    if not text.strip():
        raise BodyRefused(400, "malformed JSON: the body is empty; send a JSON object such as {\"inputs\": [...]}")
    if nests_deeper_than(raw, max_depth):
        raise BodyRefused(400, f"JSON nested more than {max_depth} levels deep (or its brackets do not pair up); "
                               "MLflow scoring JSON needs 3 levels (records or rows inside an envelope)")
    try:
        return loads(text)
    except ValueError as exc:  # also a number with more than 4300 digits
        raise BodyRefused(400, f"malformed JSON: {_short(str(exc), 120)}") from None
