"""The dockerized Jenkins' plugin folder: is it complete for docker/jenkins/plugins.txt?

scripts/jenkins-plugins.sh fills docker/jenkins/plugins/ (where the update center is
reachable); the image build copies that folder and nothing else. This check runs
before the build (start.sh) so that a missing or stale folder is one clear message,
not a Jenkins that starts without its plugins. Stdlib only: start.sh runs it with
any Python.

    python -m home_mlops.jenkins.plugins PLUGINS_TXT FOLDER   # exit 0, or 3 naming what is missing
"""
from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

FILL_COMMAND = "scripts/jenkins-plugins.sh"
ARCHIVE_SUFFIXES = (".jpi", ".hpi")


@dataclass(frozen=True)
class Plugin:
    """One plugin archive, as its META-INF/MANIFEST.MF describes it."""

    name: str
    version: str
    # (name, minimum version) of the plugins it needs; optional dependencies are left out
    requires: list[tuple[str, str]] = field(default_factory=list)


def pinned(plugins_txt: Path) -> dict[str, str]:
    """name -> version of each `name:version` line (comments and blank lines skipped)."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(plugins_txt.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition(":")
        if not sep or not name or not version:
            raise ValueError(f"{plugins_txt}:{number}: {raw.strip()!r} is not 'name:version'")
        pins[name.strip()] = version.strip()
    return pins


def _manifest_fields(text: str) -> dict[str, str]:
    """MANIFEST.MF main section: continuation lines start with one space."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            break
        if line.startswith(" ") and key:
            fields[key] += line[1:]
            continue
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def read_plugin(path: Path) -> Plugin:
    with zipfile.ZipFile(path) as archive:
        fields = _manifest_fields(archive.read("META-INF/MANIFEST.MF").decode("utf-8", "replace"))
    requires = []
    for entry in filter(None, (fields.get("Plugin-Dependencies") or "").split(",")):
        spec, _, flags = entry.partition(";")
        name, _, version = spec.partition(":")
        if "resolution:=optional" not in flags:
            requires.append((name.strip(), version.strip()))
    return Plugin(name=fields.get("Short-Name") or path.stem, version=fields.get("Plugin-Version", ""),
                  requires=requires)


def folder_plugins(folder: Path) -> dict[str, Plugin]:
    found: dict[str, Plugin] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.suffix in ARCHIVE_SUFFIXES:
            try:
                plugin = read_plugin(path)
            except (zipfile.BadZipFile, KeyError, OSError):
                found[path.stem] = Plugin(name=path.stem, version="(unreadable archive)")
                continue
            found[plugin.name] = plugin
    return found


def problems(plugins_txt: Path, folder: Path) -> list[str]:
    """What keeps `folder` from holding every pinned plugin and everything they need."""
    pins = pinned(plugins_txt)
    found = folder_plugins(folder)
    if not found:
        return [f"{folder} holds no plugin archive (*.jpi)"]
    out = []
    for name, version in pins.items():
        plugin = found.get(name)
        if plugin is None:
            out.append(f"{name}:{version} is pinned in {plugins_txt.name} but not in the folder")
        elif plugin.version != version:
            out.append(f"{name} is {plugin.version} in the folder, {plugins_txt.name} pins {version}")
    for plugin in found.values():
        for name, version in plugin.requires:
            if name not in found:
                out.append(f"{name} (>= {version}), needed by {plugin.name}, is not in the folder")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m home_mlops.jenkins.plugins PLUGINS_TXT FOLDER\n")
        return 2
    plugins_txt, folder = Path(argv[0]), Path(argv[1])
    found = problems(plugins_txt, folder)
    if found:
        sys.stderr.write(
            f"error: the plugin folder {folder} does not match {plugins_txt}:\n"
            + "".join(f"  - {line}\n" for line in found)
            + f"  expected: every pinned plugin and its dependencies as .jpi files\n"
            f"  what to do: run {FILL_COMMAND} where the Jenkins update center is reachable "
            f"(it needs the Jenkins base image too), or copy a filled folder there\n")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
