"""The dockerized Jenkins image from local files (docker/jenkins/), without a Jenkins image.

What can be checked here for real: the Dockerfile's sources and layer order, the JCasC
content, the plugin-folder check, the one ref, and start.sh's rebuild decision (its own
functions run by bash against a recording stand-in `docker`). The image build and a
running Jenkins are tests/jenkins/test_dockerized_jenkins.py (they need a Jenkins image).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from home_mlops.jenkins import one_ref, plugins

REPO = Path(__file__).resolve().parents[2]
JENKINS_DIR = REPO / "docker" / "jenkins"
DOCKERFILE = JENKINS_DIR / "Dockerfile"
CASC = JENKINS_DIR / "casc.yaml"
START = JENKINS_DIR / "start.sh"
PLUGINS_TXT = JENKINS_DIR / "plugins.txt"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuations joined, comments dropped."""
    text = re.sub(r"\\\n(?:\s*#.*\n)*\s*", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage(instructions):
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


# ------------------------------------------------------------------------------ Dockerfile


def test_dockerfile_takes_jenkins_from_the_local_image_and_nothing_from_the_update_center_or_pypi():
    instructions = _instructions(DOCKERFILE)
    text = " ".join(rest for _, rest in instructions)
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms == ["jenkins/jenkins:${JENKINS_VERSION}-jdk17 AS jenkins", "${BASE_IMAGE}"]
    assert re.search(r"^ARG BASE_IMAGE=home-mlops/python-base:3\.11$", DOCKERFILE.read_text(), re.M)
    copied_from_jenkins = [rest for word, rest in instructions if word == "COPY" and rest.startswith("--from=jenkins")]
    assert any("/usr/share/jenkins/jenkins.war" in c for c in copied_from_jenkins)
    assert any("/opt/java/openjdk" in c for c in copied_from_jenkins)
    # no plugin download, no URL, no package index: plugins and wheels are local folders
    for forbidden in ("jenkins-plugin-cli", "curl", "wget", "http://", "https://", "PIP_INDEX_URL", "ADD "):
        assert forbidden not in text, forbidden
    pip = next(rest for word, rest in instructions if word == "RUN" and "pip install" in rest)
    assert "--no-index" in pip and "--find-links /opt/home-mlops/wheels" in pip


def test_dockerfile_layers_go_from_least_to_most_often_changed():
    stage = _final_stage(_instructions(DOCKERFILE))

    def index(predicate, what):
        found = [i for i, (word, rest) in enumerate(stage) if predicate(word, rest)]
        assert found, f"no {what} in the final stage"
        return found[0]

    apt = index(lambda w, r: w == "RUN" and "apt-get install" in r, "apt layer")
    war = index(lambda w, r: w == "COPY" and "jenkins.war" in r, "jenkins.war copy")
    plugins_layer = index(lambda w, r: w == "COPY" and "docker/jenkins/plugins/" in r, "plugin copy")
    casc = index(lambda w, r: w == "COPY" and "casc.yaml" in r, "JCasC copy")
    wheels = index(lambda w, r: w == "COPY" and "build/wheels/" in r, "wheel copy")
    helper = index(lambda w, r: w == "RUN" and "pip install" in r, "helper install")
    assert apt < war < plugins_layer < casc < wheels < helper
    # the plugins go to the reference folder jenkins.sh copies into JENKINS_HOME at each start
    assert stage[plugins_layer][1].endswith("/usr/share/jenkins/ref/plugins/")
    # nothing of the project's Python sources is copied as such (only wheels, after the plugins)
    assert not [r for w, r in stage if w == "COPY" and ("pyhelpers" in r or "pyproject.toml" in r)]


# ------------------------------------------------------------------------------ JCasC


def test_casc_safe_html_timestamps_and_the_library_at_the_one_ref():
    casc = yaml.safe_load(CASC.read_text())
    assert casc["jenkins"]["markupFormatter"] == {"rawHtml": {"disableSyntaxHighlighting": False}}
    assert casc["unclassified"]["timestamper"] == {"allPipelines": True}
    (library,) = casc["unclassified"]["globalLibraries"]["libraries"]
    assert library["name"] == "home-mlops"
    assert library["allowVersionOverride"] is False
    assert library["defaultVersion"] == "${HOME_MLOPS_REF}"  # no fallback: start.sh always sets it
    assert library["retriever"]["modernSCM"]["scm"]["git"]["remote"] == "${HOME_MLOPS_GIT_URL}"
    # start.sh passes both into the container, read from jobs/defaults.yaml
    start = START.read_text()
    assert "-e HOME_MLOPS_REF -e HOME_MLOPS_GIT_URL" in start
    assert 'home_mlops.jenkins.one_ref "$repo/jobs/defaults.yaml"' in start


def test_plugins_are_pinned_including_formatter_timestamper_folder_and_validation():
    pins = plugins.pinned(PLUGINS_TXT)
    for name in ("antisamy-markup-formatter", "timestamper", "validating-string-parameter", "cloudbees-folder",
                 "configuration-as-code", "pipeline-groovy-lib", "workflow-aggregator"):
        assert name in pins, name
    for name, version in pins.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z._-]*", version) and version != "latest", (name, version)


# ------------------------------------------------------------------------------ plugin folder


def _jpi(folder: Path, name: str, version: str, depends: str = "") -> Path:
    path = folder / f"{name}.jpi"
    manifest = f"Manifest-Version: 1.0\nShort-Name: {name}\nPlugin-Version: {version}\n"
    if depends:
        # MANIFEST.MF wraps long lines at 72 bytes with a leading space on the continuation
        line = f"Plugin-Dependencies: {depends}"
        manifest += line[:72] + "\n" + "".join(f" {line[i:i + 71]}\n" for i in range(72, len(line), 71))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", manifest + "\n")
    return path


@pytest.fixture
def pinned_txt(tmp_path) -> Path:
    path = tmp_path / "plugins.txt"
    path.write_text("# comment\nalpha:1.2.3\n\nbeta:45.v6a_b  # why\n")
    return path


def test_plugin_folder_complete(tmp_path, pinned_txt):
    folder = tmp_path / "plugins"
    folder.mkdir()
    _jpi(folder, "alpha", "1.2.3", "gamma:2.0,optional-thing:9.9;resolution:=optional,"
                                   "a-plugin-with-a-very-long-name-to-wrap-the-manifest-line:1.0")
    _jpi(folder, "beta", "45.v6a_b")
    _jpi(folder, "gamma", "2.1")
    _jpi(folder, "a-plugin-with-a-very-long-name-to-wrap-the-manifest-line", "1.0")
    assert plugins.problems(pinned_txt, folder) == []
    assert plugins.main([str(pinned_txt), str(folder)]) == 0


def test_plugin_folder_problems_are_named(tmp_path, pinned_txt, capsys):
    folder = tmp_path / "plugins"
    folder.mkdir()
    assert plugins.problems(pinned_txt, folder) == [f"{folder} holds no plugin archive (*.jpi)"]
    _jpi(folder, "alpha", "1.2.2", "gamma:2.0")
    found = plugins.problems(pinned_txt, folder)
    assert "alpha is 1.2.2 in the folder, plugins.txt pins 1.2.3" in found
    assert "beta:45.v6a_b is pinned in plugins.txt but not in the folder" in found
    assert "gamma (>= 2.0), needed by alpha, is not in the folder" in found
    assert plugins.main([str(pinned_txt), str(folder)]) == 3
    err = capsys.readouterr().err
    assert "scripts/jenkins-plugins.sh" in err and "update center" in err


def test_plugin_folder_of_the_repository_is_checked_by_start_sh_before_any_build():
    text = START.read_text()
    check = text.index("-m home_mlops.jenkins.plugins")
    assert check < text.index("build_if_changed \"$ctx\"")
    assert 'plugins_dir="${HOME_MLOPS_JENKINS_PLUGINS:-$here/plugins}"' in text
    assert (JENKINS_DIR / ".gitignore").read_text().split() == ["plugins/"]


# ------------------------------------------------------------------------------ the one ref


def test_one_ref_comes_from_jobs_defaults():
    one = one_ref.load(REPO / "jobs" / "defaults.yaml")
    defaults = next(e["defaults"] for e in yaml.safe_load((REPO / "jobs" / "defaults.yaml").read_text())
                    if "defaults" in e)
    assert (one.ref, one.git_url) == (defaults["ref"], defaults["git-url"])
    proc = subprocess.run([sys.executable, "-m", "home_mlops.jenkins.one_ref", str(REPO / "jobs" / "defaults.yaml")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "pyhelpers")})
    assert proc.returncode == 0 and proc.stdout.split() == [one.ref, one.git_url]


@pytest.mark.parametrize("ref, url", [
    ("main; rm -rf /", "file:///srv/home-mlops"),
    ("${HOME}", "file:///srv/home-mlops"),
    ("../main", "file:///srv/home-mlops"),
    ("a..b", "file:///srv/home-mlops"),
    ("main.lock", "file:///srv/home-mlops"),
    ("", "file:///srv/home-mlops"),
    ("main", "file:///srv/${HOME}"),
    ("main", "file:///srv/home mlops"),
    ("main", "--upload-pack=touch /tmp/x"),
    ("main", ""),
])
def test_one_ref_refuses_hostile_values(tmp_path, ref, url):
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump([{"defaults": {"name": "global", "ref": ref, "git-url": url}}]))
    with pytest.raises(ValueError) as err:
        one_ref.load(path)
    assert repr(ref if "ref" in str(err.value).split()[0] else url) in str(err.value)
    proc = subprocess.run([sys.executable, "-m", "home_mlops.jenkins.one_ref", str(path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO / "pyhelpers")})
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr


@pytest.mark.parametrize("ref", ["main", "release/1.2", "v1.2.0", "0123456789abcdef0123456789abcdef01234567"])
def test_one_ref_accepts_branches_tags_and_commits(tmp_path, ref):
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump([{"defaults": {"name": "global", "ref": ref,
                                                  "git-url": "https://git.example.org/home-mlops.git"}}]))
    assert one_ref.load(path).ref == ref


# ------------------------------------------------------------------------------ start.sh rebuild decision

FAKE_DOCKER = r'''#!PYTHON
"""Stand-in docker: `image inspect --format` answers from a state file, `build` records and
stores the --label value as the image's label."""
import json, os, sys
state_path = os.environ["HMT_J1_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
state["calls"].append(args)
if args[:2] == ["image", "inspect"]:
    fmt = args[args.index("--format") + 1]
    image = args[-1]
    if "Labels" in fmt:
        if image not in state["labels"]:
            json.dump(state, open(state_path, "w")); sys.exit(1)
        print(state["labels"][image])
    else:
        print(state["ids"][image])
elif args[:1] == ["build"]:
    label = args[args.index("--label") + 1]
    state["labels"][args[args.index("-t") + 1]] = label.split("=", 1)[1]
json.dump(state, open(state_path, "w"))
'''


def _start_sh_functions(*names: str) -> str:
    text = START.read_text()
    out = []
    for name in names:
        match = re.search(rf"^{name}\(\) {{\n.*?^}}\n", text, re.M | re.S)
        assert match, f"start.sh has no function {name}"
        out.append(match.group(0))
    return "\n".join(out)


@pytest.fixture
def rebuild(tmp_path):
    """Runs start.sh's build_if_changed on a context folder, with the stand-in docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER.replace("PYTHON", sys.executable, 1))
    (bin_dir / "docker").chmod(0o755)
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps({"calls": [], "labels": {}, "ids": {
        "jenkins/jenkins:2.528.3-lts-jdk17": "sha256:jenkins-1", "home-mlops/python-base:3.11": "sha256:base-1"}}))
    ctx = tmp_path / "ctx"
    (ctx / "docker" / "jenkins" / "plugins").mkdir(parents=True)
    (ctx / "docker" / "jenkins" / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "docker" / "jenkins" / "plugins" / "git.jpi").write_text("git 1")
    script = ("set -euo pipefail\n"
              "image=home-mlops/jenkins:local base=jenkins/jenkins:2.528.3-lts-jdk17 "
              "python_base=home-mlops/python-base:3.11 version=2.528.3-lts inputs_label=io.home-mlops.jenkins.inputs "
              f"repo={REPO}\n"
              "die() { echo \"start.sh: $*\" >&2; exit 1; }\n"
              + _start_sh_functions("inputs_digest", "build_if_changed") + 'build_if_changed "$1"\n')

    def run() -> tuple[list[list[str]], str]:
        before = len(json.loads(state_path.read_text())["calls"])
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HMT_J1_STATE": str(state_path),
               "HOME_MLOPS_JENKINS_WHEELS": str(tmp_path)}  # the wheels are in the context: no source digest
        proc = subprocess.run(["bash", "-c", script, "build_if_changed", str(ctx)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        calls = json.loads(state_path.read_text())["calls"][before:]
        return [c for c in calls if c[:1] == ["build"]], proc.stderr

    run.ctx = ctx
    run.state = state_path
    return run


def test_start_sh_builds_once_then_only_when_an_input_changes(rebuild):
    builds, _ = rebuild()
    assert len(builds) == 1
    label = builds[0][builds[0].index("--label") + 1]
    assert re.fullmatch(r"io\.home-mlops\.jenkins\.inputs=[0-9a-f]{64}", label)

    builds, err = rebuild()
    assert builds == [] and "is up to date" in err

    plugin = rebuild.ctx / "docker" / "jenkins" / "plugins" / "git.jpi"
    plugin.write_text("git 2")  # a plugin changed
    builds, _ = rebuild()
    assert len(builds) == 1 and builds[0][builds[0].index("--label") + 1] != label
    assert rebuild()[0] == []

    (rebuild.ctx / "docker" / "jenkins" / "plugins" / "new.jpi").write_text("new")  # a file added
    assert len(rebuild()[0]) == 1

    state = json.loads(rebuild.state.read_text())
    state["ids"]["jenkins/jenkins:2.528.3-lts-jdk17"] = "sha256:jenkins-2"  # a new Jenkins image under the tag
    rebuild.state.write_text(json.dumps(state))
    assert len(rebuild()[0]) == 1
    assert rebuild()[0] == []


def test_start_sh_digest_covers_the_helper_sources_when_it_builds_the_wheel():
    """The helper wheel is not byte-reproducible: the digest reads pyhelpers/ and pyproject.toml instead."""
    body = _start_sh_functions("inputs_digest")
    assert "! -name 'home_mlops-*.whl'" in body
    assert "find pyproject.toml pyhelpers -type f" in body


def test_plugin_script_names_the_missing_jenkins_image():
    """scripts/jenkins-plugins.sh needs the Jenkins image for jenkins-plugin-cli; without it, it
    says which image and how to get it, and leaves the plugin folder alone."""
    from conftest import docker_reason

    if docker_reason():
        pytest.skip(docker_reason())
    version = re.search(r"^ARG JENKINS_VERSION=(\S+)", DOCKERFILE.read_text(), re.M).group(1)
    image = f"jenkins/jenkins:{version}-jdk17"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
        pytest.skip(f"{image} is present: the script would download plugins")
    before = sorted((JENKINS_DIR / "plugins").glob("*")) if (JENKINS_DIR / "plugins").is_dir() else None
    proc = subprocess.run(["bash", str(REPO / "scripts" / "jenkins-plugins.sh")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert image in proc.stderr and "docker pull" in proc.stderr and "docker load" in proc.stderr
    after = sorted((JENKINS_DIR / "plugins").glob("*")) if (JENKINS_DIR / "plugins").is_dir() else None
    assert after == before
