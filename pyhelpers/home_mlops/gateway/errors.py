"""A request the front door refuses: the HTTP status, a short message, the rows and fields at fault.

Each protocol renders it in its own error shape (``/predict``: ``{"detail", "errors"}``;
``/invocations``: MLflow's ``{"error_code", "message"}``; V2: ``{"error"}``), from
the same checks.
"""
from __future__ import annotations

from typing import Any

MAX_ERRORS = 20


def short(text: str, limit: int = 300) -> str:
    """One line, at most ``limit`` characters: safe to put in a client's answer or a log line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InputError(Exception):
    """A request the gateway refuses: status code, short message, optional per-field details."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def summary(errors: list[dict[str, Any]], total: int) -> str:
    """``invalid input: row 1, field 'x': Field required (and 2 more)``."""
    first = errors[0]
    where = f"row {first['row']}" if first["row"] is not None else "input"
    if first["field"]:
        where += f", field {first['field']!r}"
    more = f" (and {total - 1} more)" if total > 1 else ""
    return f"invalid input: {where}: {first['message']}{more}"
