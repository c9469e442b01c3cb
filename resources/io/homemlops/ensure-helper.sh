#!/usr/bin/env bash
# Makes `home-mlops` available to the pipeline at .home-mlops/bin/home-mlops
# (relative to the workspace), for agents that lack it.
#
#   HOME_MLOPS_SPEC  empty: link the home-mlops already on PATH, if any;
#                    otherwise a pip requirement (a path to a checkout, a git URL,
#                    a wheel) installed into .home-mlops/venv.
#   HOME_MLOPS_PYTHON  python to build the venv with (default: python3)
#
# Written to the workspace by the library steps (libraryResource) and run as
# `bash .home-mlops/ensure-helper.sh`: values arrive only through the environment.
set -euo pipefail

base=.home-mlops
link="$base/bin/home-mlops"
mkdir -p "$base/bin"

if [ -z "${HOME_MLOPS_SPEC:-}" ]; then
    if found=$(command -v home-mlops 2>/dev/null); then
        ln -sfn -- "$found" "$link"
        echo "ensure-helper: using $found" >&2
        exit 0
    fi
    echo "ensure-helper: home-mlops is not on PATH and no helperSpec was given" >&2
    echo "  expected: home-mlops installed on the agent, or helperSpec: '<pip requirement>'" >&2
    exit 2
fi

python="${HOME_MLOPS_PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "ensure-helper: $python not found on the agent; install python3 and python3-venv" >&2
    exit 2
fi

venv="$base/venv"
stamp="$venv/.home-mlops-spec"
if [ -x "$venv/bin/home-mlops" ] && [ -f "$stamp" ] && [ "$(cat -- "$stamp")" = "$HOME_MLOPS_SPEC" ]; then
    echo "ensure-helper: reusing $venv" >&2
else
    echo "ensure-helper: installing home-mlops into $venv" >&2
    rm -rf -- "$venv"
    "$python" -m venv -- "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -- "$HOME_MLOPS_SPEC"
    printf '%s' "$HOME_MLOPS_SPEC" > "$stamp"
fi
ln -sfn -- "$(cd "$venv/bin" && pwd)/home-mlops" "$link"
"$link" --help >/dev/null
echo "ensure-helper: using $link" >&2
