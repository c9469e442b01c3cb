"""The static CPS check (tests/groovy/cps_check.groovy) over the library and the Jenkinsfile,
and over samples that show each pitfall it knows (marked `// expect: <rule>` on the line)
and the same constructs where they are safe (no finding allowed). One JVM for all three."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import runner
from runner import REPO

CHECK = REPO / "tests" / "groovy" / "cps_check.groovy"
SAMPLES = REPO / "tests" / "groovy" / "cps_samples"
LIBRARY = [REPO / "Jenkinsfile", REPO / "vars", REPO / "src"]
RULES = {"closure-in-cps", "step-in-noncps", "cps-from-noncps", "non-serializable-state", "class-not-serializable"}
EXPECT = re.compile(r"//\s*expect:\s*([a-z, -]+)$")


def run_check(*paths: Path) -> tuple[int, dict, str]:
    groovy = runner.require_groovy()
    proc = subprocess.run([groovy, str(CHECK), "--json", *map(str, paths)], env=runner.groovy_env(),
                          capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, report, proc.stderr


@pytest.fixture(scope="module")
def report() -> dict:
    rc, report, stderr = run_check(*LIBRARY, SAMPLES / "bad", SAMPLES / "good")
    assert report, stderr
    assert rc == 1, "findings (the bad samples) must make the check exit 1"
    return report


def findings_under(report: dict, *roots: Path) -> list[dict]:
    return [f for f in report["findings"] if any(f["file"] == str(r) or f["file"].startswith(f"{r}/") for r in roots)]


def expected_findings(folder: Path) -> set[tuple[str, int, str]]:
    out = set()
    for path in sorted(folder.rglob("*.groovy")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            m = EXPECT.search(line.rstrip())
            if m:
                out |= {(str(path), number, rule.strip()) for rule in m.group(1).split(",")}
    return out


def test_the_library_and_the_jenkinsfile_have_no_cps_pitfalls(report):
    found = findings_under(report, *LIBRARY)
    assert found == [], "\n".join(f"{f['file']}:{f['line']}: {f['rule']}: {f['message']}" for f in found)
    # it really looked at every file: the Jenkinsfile, each step, each class
    expected = {str(REPO / "Jenkinsfile"), *map(str, (REPO / "vars").glob("*.groovy")),
                *map(str, (REPO / "src").rglob("*.groovy"))}
    assert expected <= set(report["checked"])


def test_each_pitfall_in_the_bad_samples_is_reported_exactly(report):
    expected = expected_findings(SAMPLES / "bad")
    # the samples cover every rule, most in several shapes
    assert {rule for _, _, rule in expected} == RULES
    found = {(f["file"], f["line"], f["rule"]) for f in findings_under(report, SAMPLES / "bad")}
    assert found == expected, {"missed": sorted(expected - found), "unexpected": sorted(found - expected)}
    for f in findings_under(report, SAMPLES / "bad"):
        # a message a reader can act on: what is wrong and what to do instead
        assert re.search(r"\b(use|mark|call it|make it|implement)\b|Serializable", f["message"]), f


def test_the_same_constructs_where_they_are_safe_are_not_reported(report):
    assert any(path.startswith(str(SAMPLES / "good")) for path in report["checked"])
    assert findings_under(report, SAMPLES / "good") == []


def test_an_unparsable_file_is_an_error_not_a_pass(tmp_path):
    bad = tmp_path / "broken.groovy"
    bad.write_text("def call() {\n  if (x {\n}\n")
    rc, _, stderr = run_check(bad)
    assert rc == 2 and "broken.groovy: cannot parse" in stderr
