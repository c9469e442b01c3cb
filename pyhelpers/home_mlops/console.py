"""Human output: everything for people goes to stderr, so stdout stays clean."""
from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)


def info(message: str) -> None:
    console.print(message)


def step(message: str) -> None:
    console.print(f"[bold cyan]>[/] {message}")


def ok(message: str) -> None:
    console.print(f"[bold green]ok[/] {message}")


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {message}")
