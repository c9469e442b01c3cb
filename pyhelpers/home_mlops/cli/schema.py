"""`home-mlops schema`: the JSON schema of a command's --json result, generated from records.py.

docs/schemas/<command>.schema.json are these schemas as published (`home-mlops schema --out docs/schemas`
writes them; tests/records/test_schemas.py fails when a record changes and they were not written again).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from home_mlops import console
from home_mlops.records import RESULTS, result_schema


def schema_text(command: str) -> str:
    """A schema as its published file holds it: stable key order, one trailing newline."""
    return json.dumps(result_schema(command), indent=2, sort_keys=True) + "\n"


def register(app: typer.Typer) -> None:
    @app.command()
    def schema(
        command: Optional[str] = typer.Argument(None, help=f"One of: {', '.join(RESULTS)}; all of them when omitted."),
        out: Optional[Path] = typer.Option(None, "--out", help="Write <command>.schema.json into this folder."),
    ) -> None:
        """Print the JSON schema of a command's --json result (or write the files with --out)."""
        if command is not None and command not in RESULTS:
            console.error(f"no result schema for {command!r}\n  expected: one of {', '.join(RESULTS)}")
            raise typer.Exit(2)
        commands = [command] if command else list(RESULTS)
        if out is None:
            texts = {c: json.loads(schema_text(c)) for c in commands}
            typer.echo(schema_text(command) if command else json.dumps(texts, indent=2, sort_keys=True) + "\n", nl=False)
            return
        out.mkdir(parents=True, exist_ok=True)
        for name in commands:
            (out / f"{name}.schema.json").write_text(schema_text(name))
            console.ok(f"wrote {out / f'{name}.schema.json'}")
