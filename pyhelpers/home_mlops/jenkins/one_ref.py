"""The one revision Jenkins runs: `ref` and `git-url` of jobs/defaults.yaml.

The jobs' SCM (Jenkins Job Builder renders `{ref}` and `{git-url}` into every job) and
the global library's default version (JCasC `${HOME_MLOPS_REF}`, which start.sh takes
from here) come from these two values, so the Jenkinsfile and the library steps are
always the same commit. A Jenkinsfile cannot ask for another library version
(`allowVersionOverride: false`). Stdlib + PyYAML only: start.sh runs it.

    python -m home_mlops.jenkins.one_ref jobs/defaults.yaml   # prints "<ref> <git-url>"
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

# A branch, a tag or a commit: git's ref rules, narrowed (no '..', '@{', spaces, '$').
_REF = re.compile(r"(?!.*\.\.)(?!.*//)(?!.*\.lock$)(?!/)[A-Za-z0-9][A-Za-z0-9._/-]{0,199}(?<![/.])")
# What a job's SCM and JCasC may be given: a URL or scp-like address with no space, quote,
# backslash or '$' (JCasC would read '${...}' as a variable).
_GIT_URL = re.compile(r"(?:(?:file|https?|ssh|git)://|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)[^\s'\"\\$`]{1,500}")


@dataclass(frozen=True)
class OneRef:
    ref: str
    git_url: str


def load(defaults_yaml: Path) -> OneRef:
    """The `global` defaults' ref and git-url, checked; ValueError says what is wrong."""
    import yaml

    entries = yaml.safe_load(defaults_yaml.read_text()) or []
    defaults = [entry["defaults"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("defaults"), dict)]
    found = next((d for d in defaults if d.get("name") == "global"), None)
    if found is None:
        raise ValueError(f"{defaults_yaml} has no '- defaults: {{name: global, ...}}' entry")
    ref, git_url = str(found.get("ref", "")), str(found.get("git-url", ""))
    if not _REF.fullmatch(ref):
        raise ValueError(f"ref {ref!r} in {defaults_yaml} is not a branch, tag or commit name "
                         "(letters, digits, '.', '_', '-', '/'; e.g. main or v1.2.0)")
    if not _GIT_URL.fullmatch(git_url):
        raise ValueError(f"git-url {git_url!r} in {defaults_yaml} is not a git URL "
                         "(file://, https://, ssh:// or user@host:path, without spaces, quotes or '$')")
    return OneRef(ref=ref, git_url=git_url)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m home_mlops.jenkins.one_ref jobs/defaults.yaml\n")
        return 2
    try:
        one = load(Path(argv[0]))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    print(one.ref, one.git_url)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
