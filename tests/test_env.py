"""Settings declared once (home_mlops/env.py): read through it, documented from it, no import-time effects."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from home_mlops import env

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pyhelpers" / "home_mlops"
#: code that runs inside the images, where home_mlops (and so env.py) is not installed: it reads its
#: own names, and env.py declares them for the docs
IMAGE_CODE = (PACKAGE / "gateway", PACKAGE / "build" / "templates")
NAME = re.compile(r"HOME_MLOPS_[A-Z0-9_]*[A-Z0-9]\b(?!_?\*)")  # not a pattern like HOME_MLOPS_REGISTRY_*


def package_modules(include_image_code: bool = False) -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if p.name != "env.py" and (include_image_code or not any(p.is_relative_to(d) for d in IMAGE_CODE)))


def declared_names() -> set[str]:
    return {var.name for var in env.declared()}


# --------------------------------------------------------------------------- the declarations


def test_each_name_is_declared_once_with_a_doc():
    names = [var.name for var in env.declared()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    for var in env.declared():
        assert var.doc.strip() and "\n" not in var.doc, var.name
        if var.default is not None and var.parse is not env._text:
            assert isinstance(var.default, (int, float, bool)), var.name


def test_get_parses_and_falls_back(monkeypatch):
    monkeypatch.setenv(env.GATEWAY_PORT.name, "19650")
    assert env.GATEWAY_PORT.get() == 19650 and env.GATEWAY_PORT.is_set()
    monkeypatch.setenv(env.GATEWAY_PORT.name, "")  # empty counts as unset
    assert env.GATEWAY_PORT.get() == 8000 and not env.GATEWAY_PORT.is_set()
    monkeypatch.delenv(env.GATEWAY_PORT.name)
    assert env.GATEWAY_PORT.get() == 8000 and env.GATEWAY_PORT.raw() is None
    for text, on in (("1", True), ("true", True), ("YES", True), ("0", False), ("false", False), ("no", False)):
        monkeypatch.setenv(env.DEBUG.name, text)
        assert env.DEBUG.get() is on, text


def test_every_home_mlops_name_in_the_package_is_declared():
    """Image code and container environments included: a name used anywhere is in the docs table."""
    undeclared = {}
    for path in package_modules(include_image_code=True) + sorted((PACKAGE / "build" / "templates").rglob("*.j2")):
        missing = set(NAME.findall(path.read_text(encoding="utf-8"))) - declared_names()
        if missing:
            undeclared[str(path.relative_to(ROOT))] = sorted(missing)
    assert not undeclared, f"declare these in home_mlops/env.py: {undeclared}"


# --------------------------------------------------------------------------- read only through env.py


def _home_mlops_constants(tree: ast.Module) -> set[str]:
    """Module-level names bound to a HOME_MLOPS_* string (``STATE_ENV = "HOME_MLOPS_HOME"``)."""
    bound = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            if node.value.value.startswith("HOME_MLOPS_"):
                bound.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return bound


def _is_home_mlops(arg: ast.AST, constants: set[str]) -> bool:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value.startswith("HOME_MLOPS_")
    return isinstance(arg, ast.Name) and arg.id in constants


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` or a bare ``environ``."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (isinstance(node, ast.Name) and node.id == "environ")


def direct_reads(source: str) -> list[str]:
    """Every os.environ/os.getenv read of a HOME_MLOPS_* name, and every typer envvar= given as a literal."""
    tree = ast.parse(source)
    constants = _home_mlops_constants(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            reader = (isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault") and _is_environ(func.value)) \
                or (isinstance(func, ast.Attribute) and func.attr == "getenv") \
                or (isinstance(func, ast.Name) and func.id == "getenv")
            if reader and node.args and _is_home_mlops(node.args[0], constants):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
            for keyword in node.keywords:
                if keyword.arg == "envvar" and isinstance(keyword.value, (ast.Constant, ast.List, ast.Tuple)):
                    found.append(f"line {node.lineno}: envvar={ast.unparse(keyword.value)} (use env.<NAME>.name)")
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            if _is_home_mlops(node.slice, constants):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            if _is_home_mlops(node.left, constants) and any(_is_environ(c) for c in node.comparators):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_checker_catches_each_way_of_reading():
    """The checker itself: a broken one would pass the package check below vacuously."""
    source = '''
import os
from os import environ, getenv
import typer
NAME = "HOME_MLOPS_X"
a = os.environ.get("HOME_MLOPS_A")
b = os.environ["HOME_MLOPS_B"]
c = os.getenv("HOME_MLOPS_C", "1")
d = environ.get(NAME)
e = "HOME_MLOPS_E" in os.environ
f = getenv("HOME_MLOPS_F")
g = typer.Option(None, envvar="HOME_MLOPS_G")
ok1 = os.environ.get("PATH")
ok2 = typer.Option(None, envvar=env.PORT.name)
os.environ["HOME_MLOPS_WRITTEN"] = "a write is not a read"
'''
    found = direct_reads(source)
    assert len(found) == 7, found
    for letter in "ABCFG":
        assert any(f"HOME_MLOPS_{letter}" in line for line in found), (letter, found)
    assert any("environ.get(NAME)" in line for line in found)


def test_no_module_reads_a_home_mlops_variable_directly():
    offenders = {}
    for path in package_modules():
        found = direct_reads(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, f"read these through home_mlops/env.py (env.NAME.get(), envvar=env.NAME.name): {offenders}"


def test_every_cli_option_envvar_is_declared():
    """The typer app as built: each option's environment variable is one env.py declares."""
    import typer.main

    from home_mlops.cli.app import app

    def walk(command, path):
        for param in getattr(command, "params", []):
            names = param.envvar if isinstance(param.envvar, (list, tuple)) else [param.envvar] if param.envvar else []
            for name in names:
                yield f"{path} {param.name}", name
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{path} {name}")

    pairs = list(walk(typer.main.get_command(app), "home-mlops"))
    assert any(name == env.RUN_ID.name for _, name in pairs), pairs  # the walk reaches the job options
    undeclared = sorted({f"{where}: {name}" for where, name in pairs if name not in declared_names()})
    assert not undeclared, undeclared


# --------------------------------------------------------------------------- the docs table, no side effects


def test_docs_settings_md_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "settings_doc.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    for var in env.declared():
        assert f"| `{var.name}` |" in text, var.name


IMPORT_ALL = r'''
import importlib, json, os, pkgutil, sys
before = dict(os.environ)
import home_mlops
import home_mlops.cli.app  # the CLI modules import each other through the app
failed = {}
for info in pkgutil.walk_packages(home_mlops.__path__, "home_mlops."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:  # an optional dependency not installed here: not this test's concern
        failed[info.name] = f"{type(exc).__name__}: {exc}"
after = dict(os.environ)
changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
print(json.dumps({"changed": changed, "failed": failed, "modules": len(sys.modules)}))
'''


@pytest.mark.timeout(300)
def test_importing_the_package_changes_no_environment_variable():
    env_vars = {k: v for k, v in __import__("os").environ.items()
                if not k.startswith(("MLFLOW_HTTP_REQUEST_", "BENTOML_"))}
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, env=env_vars, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["changed"] == [], report
    assert len(report["failed"]) < 5, report["failed"]  # the walk really imported the package


def test_front_door_defaults_are_the_declared_ones(monkeypatch):
    """The gateway image reads its own names (no env.py there): its defaults must be the documented ones."""
    import os

    from home_mlops.gateway.settings import Settings

    for name in list(os.environ):
        if name.startswith("HOME_MLOPS_"):
            monkeypatch.delenv(name)
    read = Settings.from_env()
    assert {
        env.UPSTREAM_URL: read.upstream_url, env.UPSTREAM_TIMEOUT: read.timeout,
        env.UPSTREAM_CONNECT_TIMEOUT: read.connect_timeout, env.UPSTREAM_MAX_CONNECTIONS: read.max_connections,
        env.UPSTREAM_KEEPALIVE_SECONDS: read.keepalive_seconds, env.MAX_BODY_BYTES: read.max_body_bytes,
        env.MAX_ROWS: read.max_rows, env.MAX_DEPTH: read.max_depth, env.MAX_IN_FLIGHT: read.max_in_flight,
        env.MAX_QUEUE: read.max_queue, env.QUEUE_TIMEOUT: read.queue_timeout,
    } == {var: var.default for var in (
        env.UPSTREAM_URL, env.UPSTREAM_TIMEOUT, env.UPSTREAM_CONNECT_TIMEOUT, env.UPSTREAM_MAX_CONNECTIONS,
        env.UPSTREAM_KEEPALIVE_SECONDS, env.MAX_BODY_BYTES, env.MAX_ROWS, env.MAX_DEPTH, env.MAX_IN_FLIGHT,
        env.MAX_QUEUE, env.QUEUE_TIMEOUT)}
