#!/usr/bin/env bash
# Fills docker/jenkins/plugins/ with the plugins pinned in docker/jenkins/plugins.txt and
# their dependencies, so that the dockerized Jenkins builds with no update center.
# Run it once where the Jenkins update center is reachable (then copy the folder to an
# offline machine if you like); rerun it after changing plugins.txt or JENKINS_VERSION.
#
#   scripts/jenkins-plugins.sh
#
# Uses jenkins-plugin-cli from the Jenkins base image named in docker/jenkins/Dockerfile
# (present locally: docker pull/load it first), against that image's jenkins.war, with
# the minimum dependency versions the pinned plugins require (--latest=false), so the
# same plugins.txt gives the same folder. Writes plugins.lock (name:version of every
# archive) next to the archives, and checks the result like start.sh does.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/docker/jenkins"
repo="$(cd "$here/../.." && pwd)"
version="$(sed -n 's/^ARG JENKINS_VERSION=//p' "$here/Dockerfile")"
base="jenkins/jenkins:${version}-jdk17"
out="$here/plugins"
python="${HOME_MLOPS_PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python=python3

die() { echo "jenkins-plugins.sh: $*" >&2; exit "${code:-1}"; }

docker info >/dev/null 2>&1 || code=7 die "the Docker daemon does not answer (start dockerd)"
docker image inspect "$base" >/dev/null 2>&1 \
    || code=3 die "base image $base is not present locally; docker pull $base (or docker load -i jenkins.tar) first"

staging="$(mktemp -d "$here/.plugins-XXXXXX")"
trap 'rm -rf "$staging"' EXIT
chmod 0777 "$staging"  # written by the image's jenkins user
echo "> jenkins-plugin-cli (from $base): $here/plugins.txt -> $out" >&2
# the tool deletes and recreates its download directory: a subfolder of the mount, not the mount
docker run --rm --network host --entrypoint jenkins-plugin-cli \
    -v "$here/plugins.txt:/tmp/plugins.txt:ro" -v "$staging:/tmp/out" \
    "$base" --plugin-file /tmp/plugins.txt --plugin-download-directory /tmp/out/plugins \
    --war /usr/share/jenkins/jenkins.war --latest=false --verbose >&2 \
    || code=7 die "jenkins-plugin-cli failed (is the update center reachable from here?)"

rm -rf "$out"
mkdir -p "$out"
cp "$staging"/plugins/*.jpi "$out"/
PYTHONPATH="$repo/pyhelpers" "$python" - "$out" <<'PY'
import sys
from pathlib import Path
from home_mlops.jenkins.plugins import folder_plugins
folder = Path(sys.argv[1])
lines = sorted(f"{p.name}:{p.version}" for p in folder_plugins(folder).values())
(folder / "plugins.lock").write_text("\n".join(lines) + "\n")
print(f"ok {len(lines)} plugins in {folder} (plugins.lock)", file=sys.stderr)
PY
PYTHONPATH="$repo/pyhelpers" "$python" -m home_mlops.jenkins.plugins "$here/plugins.txt" "$out"
