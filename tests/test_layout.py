"""The suite runs every test file: pytest's defaults skip some folder names (``build``,
``dist``, ...), and tests/ mirrors the source, which has a ``build/`` package."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def collected() -> list[str]:
    """The test files in the order pytest collects them (the order xdist hands them out)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q"],
                          cwd=TESTS.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return list(dict.fromkeys(line.split("::")[0] for line in done.stdout.splitlines() if "::" in line))


def test_every_test_file_is_collected(collected):
    on_disk = {str(p.relative_to(TESTS.parent)) for p in TESTS.rglob("test_*.py")}
    assert on_disk - set(collected) == set()


def test_the_slowest_files_are_collected_first(collected):
    """make test's two workers take whole files in collection order; a renamed slow file that
    silently fell to the end of the queue would leave one worker running it alone."""
    from conftest import SLOWEST_FIRST

    assert collected[:len(SLOWEST_FIRST)] == list(SLOWEST_FIRST)


def test_test_folders_mirror_the_package():
    package = TESTS.parent / "pyhelpers" / "home_mlops"
    stages = {p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    for folder in ("resolve", "build", "deploy", "gateway", "jenkins", "cli", "k8s", "platform"):
        assert folder in stages and (TESTS / folder).is_dir(), folder
