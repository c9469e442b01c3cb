#!/usr/bin/env python3
"""docs/settings.md from home_mlops/env.py: every environment variable, its type, default and doc.

    .venv/bin/python scripts/settings_doc.py          # write docs/settings.md
    .venv/bin/python scripts/settings_doc.py --check  # exit 1 when the committed file is stale

Sections follow the comment lines that group the declarations in env.py.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "settings.md"
sys.path.insert(0, str(ROOT / "pyhelpers"))

from home_mlops import env  # noqa: E402

TYPES = {"_text": "text", "_flag": "flag (1/true/yes/on)", "int": "integer", "float": "number"}


def sections() -> list[tuple[str, list[env.EnvVar]]]:
    """(heading, declarations) in env.py's order; a heading is the comment line above a group."""
    source = Path(env.__file__).read_text(encoding="utf-8")
    lines = source.splitlines()
    by_name = {name: value for name, value in vars(env).items() if isinstance(value, env.EnvVar)}
    groups: list[tuple[str, list[env.EnvVar]]] = [("General", [])]
    last_line = 0
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in by_name):
            continue
        heading = _last_comment_block(lines[last_line:node.lineno - 1])
        if heading:
            groups.append((heading, []))
        groups[-1][1].append(by_name[node.targets[0].id])
        last_line = node.end_lineno or node.lineno
    return [(heading, items) for heading, items in groups if items]


def _last_comment_block(lines: list[str]) -> str:
    """The last run of top-level comment lines (a heading may wrap onto a second line), joined."""
    block: list[str] = []
    for line in lines:
        if line.startswith("# ") and not line.startswith("# ---"):
            block.append(line[2:].strip())
        elif block and line.strip():
            block = []  # code between: that comment belonged to something else
    return " ".join(block)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    out = [
        "# Settings: every environment variable home-mlops reads",
        "",
        "Generated from `pyhelpers/home_mlops/env.py` by `scripts/settings_doc.py`; do not edit by hand",
        "(a test fails when this file and env.py differ). A command-line option wins over its variable;",
        "deploy settings then fall back to the app's entry in `jobs/projects.yaml`, then `jobs/defaults.yaml`.",
        "An empty value counts as unset.",
        "",
    ]
    for heading, items in sections():
        out += [f"## {heading}", "", "| Variable | Type | Default | What |", "| --- | --- | --- | --- |"]
        for var in items:
            kind = TYPES.get(getattr(var.parse, "__name__", ""), getattr(var.parse, "__name__", "text"))
            default = "" if var.default is None else f"`{var.default}`"
            out.append(f"| `{var.name}` | {kind} | {cell(default)} | {cell(var.doc)} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC.relative_to(ROOT)} is stale: run .venv/bin/python scripts/settings_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)} ({sum(len(items) for _, items in sections())} variables)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
