#!/usr/bin/env bash
# Builds (only when its inputs changed) and starts the dockerized Jenkins for home-mlops,
# waits until it is ready, and writes the settings `home-mlops jenkins` needs to
# $HOME_MLOPS_HOME/jenkins/jenkins.env (mode 0600; source it).
#
#   docker/jenkins/start.sh          build (if needed) + (re)start + wait
#   docker/jenkins/start.sh stop     stop and remove the container (the volume stays)
#
# Environment (all optional):
#   HOME_MLOPS_JENKINS_PORT   8080             Jenkins listens on 127.0.0.1:<port> (host network)
#   JENKINS_ADMIN_ID          admin
#   JENKINS_ADMIN_PASSWORD    generated once, kept in the state folder
#   REGISTRY_USER / REGISTRY_PASSWORD   become the credentials 'home-mlops-registry'
#   HOME_MLOPS_TRUSTED_REGISTRIES       registries the CLI may contact (blank: its default)
# Passwords never enter the container's environment (where `docker inspect` and every
# build would see them): they go, on stdin, into files in the volume
# home-mlops-jenkins-secrets, which JCasC reads (casc.yaml, ${readFile:...}).
#   MLFLOW_TRACKING_URI       http://127.0.0.1:8001 (home-mlops mlflow-server)
#   HOME_MLOPS_JENKINS_WAIT   300              seconds to wait for Jenkins
#   HOME_MLOPS_JENKINS_NAME   home-mlops-jenkins   the container (volumes <name>-home, <name>-secrets)
#   HOME_MLOPS_JENKINS_PLUGINS  docker/jenkins/plugins   the plugin folder (scripts/jenkins-plugins.sh)
#   HOME_MLOPS_JENKINS_WHEELS   (built here)     a folder with the helper's wheel and its dependencies
#                                               (for a machine without the package index)
# Needs, all local (nothing is pulled, no update center):
#   - the Jenkins image jenkins/jenkins:<JENKINS_VERSION>-jdk17 (docker pull/load it yourself);
#   - the platform's base image home-mlops/python-base:3.11 (`home-mlops platform up` makes it);
#   - docker/jenkins/plugins/ filled by scripts/jenkins-plugins.sh;
#   - a Docker daemon, and python3 with python-jenkins and pip (the repository's .venv).
# The library version and the jobs' SCM come from one place: `ref` and `git-url` in
# jobs/defaults.yaml. The image is rebuilt only when a digest of everything it is made
# from (its context, build arguments and both base images) differs from the label of the
# image already there.
set -euo pipefail

# Take the passwords out of the environment first: no command below (docker, python)
# inherits them; they reach Jenkins only through put_secret's stdin.
admin_password="${JENKINS_ADMIN_PASSWORD:-}"
registry_user="${REGISTRY_USER:-home-mlops}" registry_password="${REGISTRY_PASSWORD:-}"
unset JENKINS_ADMIN_PASSWORD REGISTRY_USER REGISTRY_PASSWORD

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
container="${HOME_MLOPS_JENKINS_NAME:-home-mlops-jenkins}"
[[ "$container" =~ ^[a-z0-9][a-z0-9_.-]{0,62}$ ]] || { echo "start.sh: HOME_MLOPS_JENKINS_NAME '$container' is not a container name" >&2; exit 2; }
volume="$container-home"
secrets_volume="$container-secrets"
secrets_dir=/run/secrets/home-mlops
image=home-mlops/jenkins:local
port="${HOME_MLOPS_JENKINS_PORT:-8080}"
state="${HOME_MLOPS_HOME:-$repo/.home-mlops}/jenkins"
version="$(sed -n 's/^ARG JENKINS_VERSION=//p' "$here/Dockerfile")"
base="jenkins/jenkins:${version}-jdk17"
python_base="$(sed -n 's/^ARG BASE_IMAGE=//p' "$here/Dockerfile")"
inputs_label=io.home-mlops.jenkins.inputs

die() { echo "start.sh: $*" >&2; exit "${code:-1}"; }

# helper_wheels DEST: the helper as a wheel, and its dependencies' wheels from the host's
# wheel cache (home_mlops.build.wheels.wheel_cache, filled with this host's pip settings
# the first time, offline afterwards), like the model images.
helper_wheels() {
    # the extras the image installs (docker/jenkins/Dockerfile): a job's NAS may be gs:// or s3://
    local dest="$1" cache helper_wheel src fetched EXTRAS="[gcs,s3]"
    cache="$(PYTHONPATH="$repo/pyhelpers" "$python" -c 'from home_mlops.build.wheels import wheel_cache; print(wheel_cache())')"
    echo "> helper wheels (cache $cache)" >&2
    # built from a copy: setuptools builds in-tree (build/, *.egg-info) and the checkout stays clean
    src="$(mktemp -d)"
    cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/pyhelpers" "$src/"
    SOURCE_DATE_EPOCH=315532800 "$python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$dest" "$src" >&2 \
        || code=4 die "could not build the helper's wheel from $repo"
    rm -rf "$src"
    helper_wheel="$(ls "$dest"/home_mlops-*.whl)"
    # pip wheel, not download: a dependency published only as an sdist (multi-key-dict,
    # python-jenkins') is built into a wheel once, here, so the image installs offline.
    if ! "$python" -m pip wheel --quiet --no-index --find-links "$cache" --find-links "$dest" \
            -w "$dest" "$helper_wheel$EXTRAS" >/dev/null 2>&1; then
        # fetched into a fresh folder, then only the dependencies go to the cache: the helper's
        # own wheel keeps its version across edits, and a stale copy in a folder pip writes to
        # would be taken for "already downloaded"
        fetched="$(mktemp -d)"
        "$python" -m pip wheel --quiet --find-links "$cache" --find-links "$dest" -w "$fetched" "$helper_wheel$EXTRAS" >&2 \
            || code=7 die "could not fetch the helper's dependencies into the wheel cache $cache (pip settings of this host)"
        find "$fetched" -name '*.whl' ! -name 'home_mlops-*' -exec cp -n {} "$cache/" \;
        rm -rf "$fetched"
        "$python" -m pip wheel --quiet --no-index --find-links "$cache" --find-links "$dest" \
            -w "$dest" "$helper_wheel$EXTRAS" >&2 || code=4 die "the wheel cache $cache lacks the helper's dependencies"
    fi
}

# inputs_digest CTX: what the image is made from, as one sha256: every file of the context
# (path and content; the helper's own wheel by the sources it is built from, since a wheel
# is not byte-reproducible), the build arguments and the two base images' ids.
inputs_digest() {
    local ctx="$1"
    {
        (cd "$ctx" && find . -type f ! -name 'home_mlops-*.whl' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
        if [ -z "${HOME_MLOPS_JENKINS_WHEELS:-}" ]; then
            (cd "$repo" && find pyproject.toml pyhelpers -type f ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
                | LC_ALL=C sort -z | xargs -0 -r sha256sum)
        fi
        echo "jenkins=$(docker image inspect --format '{{.Id}}' "$base")"
        echo "base=$(docker image inspect --format '{{.Id}}' "$python_base")"
        echo "build-args=BASE_IMAGE=$python_base JENKINS_VERSION=$version"
    } | sha256sum | cut -d' ' -f1
}

# build_if_changed CTX: docker build only when the inputs' digest differs from the label of
# the image already there; the new image carries the digest as that label.
build_if_changed() {
    local ctx="$1" inputs current
    inputs="$(inputs_digest "$ctx")"
    current="$(docker image inspect --format "{{ index .Config.Labels \"$inputs_label\" }}" "$image" 2>/dev/null || true)"
    if [ "$current" = "$inputs" ]; then
        echo "> $image is up to date (inputs ${inputs:0:12})" >&2
        return 0
    fi
    echo "> building $image from $base + $python_base (inputs ${inputs:0:12})" >&2
    docker build --network host -t "$image" --label "$inputs_label=$inputs" \
        -f "$ctx/docker/jenkins/Dockerfile" "$ctx" >&2
}

if [ "${1:-}" = stop ]; then
    docker rm -f "$container" >/dev/null 2>&1 || true
    echo "stopped $container (volume $volume kept)" >&2
    exit 0
fi

docker info >/dev/null 2>&1 || code=7 die "the Docker daemon does not answer (start dockerd)"
if ! docker image inspect "$base" >/dev/null 2>&1; then
    code=3 die "the Jenkins image $base is not present locally; load it first (docker pull $base where a registry is reachable, or docker load -i jenkins.tar)"
fi
if ! docker image inspect "$python_base" >/dev/null 2>&1; then
    code=3 die "the base image $python_base is not present locally; make it with: home-mlops platform up"
fi

python="${HOME_MLOPS_PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python=python3
"$python" -c 'import jenkins' 2>/dev/null || code=2 die "$python lacks python-jenkins (pip install python-jenkins)"
# the plugin folder (scripts/jenkins-plugins.sh fills it; HOME_MLOPS_JENKINS_PLUGINS names another)
plugins_dir="${HOME_MLOPS_JENKINS_PLUGINS:-$here/plugins}"
PYTHONPATH="$repo/pyhelpers" "$python" -m home_mlops.jenkins.plugins "$here/plugins.txt" "$plugins_dir" \
    || code=3 die "the plugin folder $plugins_dir is not ready (see above)"

# The one ref (and the repository URL) the jobs check out: the library uses the same.
read -r git_ref git_url < <(PYTHONPATH="$repo/pyhelpers" "$python" -m home_mlops.jenkins.one_ref "$repo/jobs/defaults.yaml") \
    || code=2 die "jobs/defaults.yaml has no valid ref/git-url (see above)"

mkdir -p "$state"
chmod 700 "$state"
# The admin password (given, kept from an earlier start, or generated once) lives in
# $state/admin-password (0600, no trailing newline), never in an exported variable.
if [ -z "$admin_password" ] && [ -s "$state/admin-password" ]; then
    admin_password="$(cat "$state/admin-password")"
elif [ -z "$admin_password" ]; then
    admin_password="$("$python" -c 'import secrets; print(secrets.token_urlsafe(24))')"
fi
(umask 077; printf '%s' "$admin_password" > "$state/admin-password")
export JENKINS_ADMIN_ID="${JENKINS_ADMIN_ID:-admin}"
export HOME_MLOPS_TRUSTED_REGISTRIES="${HOME_MLOPS_TRUSTED_REGISTRIES:-}"
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-http://127.0.0.1:8001}"
export HOME_MLOPS_JENKINS_URL="http://127.0.0.1:${port}/"
export JENKINS_OPTS="--httpPort=${port} --httpListenAddress=127.0.0.1"
export HOME_MLOPS_REF="$git_ref" HOME_MLOPS_GIT_URL="$git_url"

# Build context: only what the image is made from.
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
wheels="$ctx/docker/jenkins/build/wheels"
mkdir -p "$wheels" "$ctx/docker/jenkins/plugins"
cp -r "$here/Dockerfile" "$here/casc.yaml" "$here/init.groovy.d" "$ctx/docker/jenkins/"
cp "$plugins_dir"/*.jpi "$ctx/docker/jenkins/plugins/"
if [ -n "${HOME_MLOPS_JENKINS_WHEELS:-}" ]; then
    cp "$HOME_MLOPS_JENKINS_WHEELS"/*.whl "$wheels/"
else
    helper_wheels "$wheels"
fi
build_if_changed "$ctx"

# pip settings of the host for the builds inside Jenkins (the model images' wheels).
pipcfg() { "$python" -m pip config get "global.$1" 2>/dev/null || true; }
index_url="$(pipcfg index-url)"; extra_url="$(pipcfg extra-index-url)"; find_links="$(pipcfg find-links)"
run_mounts=()
if [ -n "$find_links" ] && [ -d "$find_links" ]; then
    # the host's local wheels (e.g. CPU torch): mounted at the same path, for builds inside Jenkins too
    run_mounts+=(-v "$find_links:$find_links:ro" -e "PIP_FIND_LINKS=$find_links")
fi
for url in $index_url $extra_url; do
    # a local package index (file:///...) is mounted at the same path, read-only
    dir="${url#file://}"
    if [ "$dir" != "$url" ] && [ -d "$dir" ]; then
        run_mounts+=(-v "$dir:$dir:ro")
    fi
done

# put_secret NAME: stdin -> $secrets_dir/NAME in the secrets volume, written by the
# image's jenkins user (mode 0600). The value never appears in argv or an environment.
put_secret() {
    docker run --rm -i --network none --entrypoint /bin/sh -v "$secrets_volume:$secrets_dir" "$image" \
        -c 'umask 077 && cat > "$0/$1"' "$secrets_dir" "$1"
}
printf '%s' "$admin_password" | put_secret admin-password
unset admin_password
printf '%s' "$registry_user" | put_secret registry-user
printf '%s' "$registry_password" | put_secret registry-password
unset registry_password

docker rm -f "$container" >/dev/null 2>&1 || true
sock_gid="$(stat -c %g /var/run/docker.sock)"
echo "> starting $container on $HOME_MLOPS_JENKINS_URL" >&2
docker run -d --name "$container" --restart unless-stopped --network host \
    --group-add "$sock_gid" \
    -v /var/run/docker.sock:/var/run/docker.sock \
    -v "$volume:/var/jenkins_home" \
    -v "$secrets_volume:$secrets_dir:ro" \
    -v "$repo:/srv/home-mlops:ro" \
    "${run_mounts[@]}" \
    -e JENKINS_ADMIN_ID -e HOME_MLOPS_TRUSTED_REGISTRIES \
    -e MLFLOW_TRACKING_URI -e HOME_MLOPS_JENKINS_URL -e JENKINS_OPTS -e HOME_MLOPS_REF -e HOME_MLOPS_GIT_URL \
    -e PIP_INDEX_URL="$index_url" -e PIP_EXTRA_INDEX_URL="$extra_url" \
    "$image" >/dev/null

echo "> waiting for Jenkins (python-jenkins wait_for_normal_op)" >&2
HOME_MLOPS_JENKINS_WAIT="${HOME_MLOPS_JENKINS_WAIT:-300}" HOME_MLOPS_ADMIN_PASSWORD_FILE="$state/admin-password" \
    "$python" - <<'PY' || code=7 die "Jenkins did not become ready; see: docker logs $container"
import os, sys, jenkins
with open(os.environ["HOME_MLOPS_ADMIN_PASSWORD_FILE"], encoding="utf-8") as handle:
    password = handle.read()
server = jenkins.Jenkins(os.environ["HOME_MLOPS_JENKINS_URL"], username=os.environ["JENKINS_ADMIN_ID"],
                         password=password, timeout=10)
if not server.wait_for_normal_op(int(os.environ["HOME_MLOPS_JENKINS_WAIT"])):
    sys.exit(1)
print("ready: Jenkins", server.get_version(), "as", server.get_whoami()["id"], file=sys.stderr)
PY

token=""
for _ in $(seq 1 60); do
    token="$(docker exec "$container" cat /var/jenkins_home/secrets/home-mlops-api-token 2>/dev/null || true)"
    [ -n "$token" ] && break
    sleep 2
done
[ -n "$token" ] || code=7 die "no API token was written (init.groovy.d); see: docker logs $container"

(umask 077; cat > "$state/jenkins.env" <<ENV
export HOME_MLOPS_JENKINS_URL='$HOME_MLOPS_JENKINS_URL'
export HOME_MLOPS_JENKINS_USER='$JENKINS_ADMIN_ID'
export HOME_MLOPS_JENKINS_TOKEN='$token'
ENV
)
echo "ok Jenkins is ready at $HOME_MLOPS_JENKINS_URL (user $JENKINS_ADMIN_ID, password in $state/admin-password)" >&2
echo "   source $state/jenkins.env && home-mlops jenkins register" >&2
