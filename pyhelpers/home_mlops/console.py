"""Human output: everything for people goes to stderr, so stdout stays clean.

Values (parameters, model fields, pip and container output) are printed
literally: only the fixed prefixes are styled, and a message is a rich ``Text``
that is never parsed for markup, so ``[/x]`` prints as ``[/x]`` and
``[link=...]`` is not a link.
"""
from __future__ import annotations

from rich.console import Console
from rich.text import Text

console = Console(stderr=True, highlight=False, soft_wrap=True)


def _print(prefix: str, style: str, message: object) -> None:
    line = Text()
    if prefix:
        line.append(prefix, style=style)
        line.append(" ")
    line.append(str(message))
    console.print(line, markup=False, highlight=False, emoji=False)


def info(message: object) -> None:
    _print("", "", message)


def step(message: object) -> None:
    _print(">", "bold cyan", message)


def ok(message: object) -> None:
    _print("ok", "bold green", message)


def warn(message: object) -> None:
    _print("warning:", "yellow", message)


def error(message: object) -> None:
    _print("error:", "bold red", message)


def internal_error(message: object) -> None:
    _print("internal error:", "bold red", message)


def rule(title: object) -> None:
    console.rule(Text(str(title), style="bold"))
