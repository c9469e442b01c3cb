"""Dependencies as extras: everything imported is declared, the core runs without the extras,
and a missing extra is exit 2 naming it (never 'not found', never a traceback)."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from conftest import cli_env, run_cli
from home_mlops.errors import ExitCode
from home_mlops.extras import EXTRA_OF_MODULE, MissingDependency, require_installed

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pyhelpers" / "home_mlops"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: code that runs inside the images: its third-party modules come from the image's own requirements
IMAGE_CODE = (PACKAGE / "gateway", PACKAGE / "build" / "templates")
EXTRA_MODULES = ("google", "boto3", "botocore", "s3transfer", "jenkins", "jenkins_jobs")


def blocked_imports(folder: Path, *modules: str) -> str:
    """A PYTHONPATH folder whose sitecustomize makes ``modules`` unimportable: a fresh install without
    their extras. ``google.protobuf`` (MLflow's core) stays importable; ``google.cloud`` etc. do not."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Blocked:\n"
        f"    names = {modules!r}\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        top = name.split('.')[0]\n"
        "        if top == 'google' and (name == 'google' or name.startswith(('google.protobuf', 'google._upb'))):\n"
        "            return None\n"
        "        if top in self.names:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Blocked())\n"
    )
    return str(folder)


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def declared_distributions() -> dict[str, str]:
    """distribution -> where pyproject declares it ('core' or the extra's name)."""
    project = PYPROJECT["project"]
    found = {_name(r): "core" for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in requirements:
            found.setdefault(_name(requirement), extra)
    return found


def imported_modules() -> dict[str, set[str]]:
    """Top-level third-party module -> the package files (outside image code) that import it."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if any(path.is_relative_to(d) for d in IMAGE_CODE):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("home_mlops", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared():
    """The issue: requests and packaging were used but not declared."""
    by_module = packages_distributions()
    declared = declared_distributions()
    modules = imported_modules()
    assert {"requests", "packaging", "mlflow", "docker"} <= set(modules)  # the scan sees the package
    undeclared = {}
    for module, files in sorted(modules.items()):
        distributions = [d.lower().replace("_", "-") for d in by_module.get(module, [module])]
        if not any(d in declared for d in distributions):
            undeclared[module] = sorted(files)
    assert not undeclared, f"declare these in pyproject.toml (core or an extra): {undeclared}"


def test_extras_are_the_ones_the_issue_names_and_pinned():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"server", "jenkins", "gcs", "s3", "train", "dev"} <= set(extras)
    declared = declared_distributions()
    for distribution, extra in (("boto3", "s3"), ("google-cloud-storage", "gcs"), ("python-jenkins", "jenkins"),
                                ("jenkins-job-builder", "jenkins"), ("moto", "dev")):
        assert declared.get(distribution) == extra, (distribution, declared.get(distribution))
    for requirement in extras["s3"] + [r for r in extras["dev"] if r.startswith("moto")]:
        assert re.search(r"==|<", requirement), f"{requirement} is not pinned"
    # the dev extra (what scripts/setup.sh installs for the tests) brings every other extra but torch
    assert any(r.startswith("home-mlops[") and all(e in r for e in ("server", "jenkins", "gcs", "s3", "train"))
               for r in extras["dev"])
    # each module the extras map names belongs to the extra pyproject puts its distribution in
    for module, extra in EXTRA_OF_MODULE.items():
        assert extra in extras, (module, extra)


def test_setup_installs_every_extra():
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    line = next(line for line in setup.splitlines() if "pip install" in line and "-e" in line)
    for extra in PYPROJECT["project"]["optional-dependencies"]:
        assert extra in line, (extra, line)


def test_require_installed_does_not_import():
    require_installed("json", "x")
    with pytest.raises(MissingDependency) as info:
        require_installed("home_mlops_no_such_module", "the thing")
    assert info.value.code == ExitCode.BAD_INPUT


# --------------------------------------------------------------------------- the CLI without the extras


@pytest.fixture
def no_extras(tmp_path) -> str:
    return blocked_imports(tmp_path / "no-extras", *EXTRA_MODULES)


@pytest.mark.timeout(600)
def test_core_commands_run_without_the_extras(no_extras, state):
    env = cli_env(state, PYTHONPATH=no_extras)
    probe = run_cli(["--help"], env, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    # the blocker works: the same interpreter cannot import an extra's module
    check = run_cli(["jenkins", "status"], cli_env(state, PYTHONPATH=no_extras, HOME_MLOPS_JENKINS_URL="http://127.0.0.1:19605/",
                                                   HOME_MLOPS_JENKINS_USER="hmt-s", HOME_MLOPS_JENKINS_TOKEN="hmt-s-token"),
                    timeout=120)
    assert check.returncode == 2, check.stderr[-2000:]
    assert "[jenkins]" in check.stderr and "Traceback" not in check.stderr
    assert "hmt-s-token" not in check.stderr


@pytest.mark.timeout(600)
def test_gs_nas_without_the_gcs_extra_names_it(no_extras, state, tmp_path):
    out = tmp_path / "r.json"
    proc = run_cli(["resolve", "--experiment-id", "1", "--run-id", "0123456789abcdef0123456789abcdef",
                    "--nas", "gs://hmt-s-bucket/mlruns", "--json", str(out)],
                   cli_env(state, PYTHONPATH=no_extras, MLFLOW_TRACKING_URI="http://127.0.0.1:9"), timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    text = " ".join(proc.stderr.split())
    assert "[gcs]" in text and "not found" not in text and "Traceback" not in proc.stderr, text
    import json

    assert json.loads(out.read_text())["exit_code"] == 2
