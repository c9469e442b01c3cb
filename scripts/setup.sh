#!/usr/bin/env bash
# Install what home-mlops needs on a Debian host (idempotent): apt packages, then the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker.io docker-registry apache2-utils debootstrap groovy openjdk-17-jre-headless curl git wrk)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The venv: the package in editable mode with every extra (server, jenkins, gcs, s3, train, torch, dev).
# torch==2.13.0 resolves to the CPU wheel in the host's pip find-links.
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[server,jenkins,gcs,s3,train,torch,dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
echo "setup: ok (.venv ready)"
