"""Human output: everything for people goes to stderr, so stdout stays clean.

Values (parameters, model fields, pip and container output) are printed
literally: only the fixed prefixes are styled, and a message is a rich ``Text``
that is never parsed for markup, so ``[/x]`` prints as ``[/x]`` and
``[link=...]`` is not a link.
"""
from __future__ import annotations

from rich.console import Console
from rich.text import Text

from home_mlops import output

console = Console(stderr=True, highlight=False, soft_wrap=True)


def _print(prefix: str, style: str, message: object, level: str = "info") -> None:
    """Rich on a terminal; without one (or with --log-format json) plain stamped lines (output.py)."""
    if not output.shown(level):
        return
    if output.settings().mode != "rich":
        output.write_plain(level, prefix, str(message))
        return
    line = Text()
    if prefix:
        line.append(prefix, style=style)
        line.append(" ")
    line.append(output.clean_message(message))
    console.print(line, markup=False, highlight=False, emoji=False)


def info(message: object) -> None:
    _print("", "", message)


def step(message: object) -> None:
    _print(">", "bold cyan", message)


def ok(message: object) -> None:
    _print("ok", "bold green", message)


def warn(message: object) -> None:
    _print("warning:", "yellow", message, level="warning")


def error(message: object) -> None:
    _print("error:", "bold red", message, level="error")


def internal_error(message: object) -> None:
    _print("internal error:", "bold red", message, level="error")


def summary(message: object) -> None:
    """The last lines of every command: what was built or deployed, where, how long."""
    _print("summary:", "bold", message, level="summary")


def rule(title: object) -> None:
    if not output.shown("info"):
        return
    if output.settings().mode != "rich":
        output.write_plain("info", "==", str(title))
        return
    console.rule(Text(output.clean_message(title), style="bold"))
