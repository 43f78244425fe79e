#!/usr/bin/env bash
# Installs every tool the local stack and the checks need, pinned, into project-local folders
# that git ignores (.local/). Running it again changes nothing unless a pin changed.
#   .local/venv         moto, boto3, cargo-lambda, ziglang   (infra/local/requirements.txt)
#   .local/checks-venv  aws-sam-cli, cfn-lint                (infra/local/requirements-checks.txt)
#   .local/node         asl-validator, cfn-guard (npm)       (NPM_TOOLS below)
#   /usr/bin/chromium   Debian's chromium, for the browser tests (CHROMIUM_VERSION below)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
local_dir="$root/.local"
python="${PYTHON:-python3}"
NPM_TOOLS="asl-validator@4.0.0 @cdklabs/cdk-validator-cfnguard@0.0.62"
# Debian's package for this machine's release; when the archive no longer holds this version
# (a security update replaced it), the release's current one is installed, and said so.
CHROMIUM_VERSION="148.0.7778.167-1~deb12u1"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is required and is not on PATH" >&2; exit 1; }
}

# venv DIR REQUIREMENTS: a venv with exactly these pins, rebuilt only when they change.
venv() {
  local dir="$1" requirements="$2" stamp="$1/.regate-requirements"
  if [ -f "$stamp" ] && cmp -s "$stamp" "$requirements"; then
    echo "setup: $dir is up to date"
    return
  fi
  echo "setup: installing $(basename "$requirements") into $dir"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==24.3.1
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
}

need "$python"
need npm
mkdir -p "$local_dir"
venv "$local_dir/venv" "$root/infra/local/requirements.txt"
venv "$local_dir/checks-venv" "$root/infra/local/requirements-checks.txt"

node_stamp="$local_dir/node/.regate-tools"
if [ -f "$node_stamp" ] && [ "$(cat "$node_stamp")" = "$NPM_TOOLS" ]; then
  echo "setup: $local_dir/node is up to date"
else
  echo "setup: installing $NPM_TOOLS into $local_dir/node"
  rm -rf "$local_dir/node"
  mkdir -p "$local_dir/node"
  # shellcheck disable=SC2086
  npm install --silent --no-audit --no-fund --no-package-lock --prefix "$local_dir/node" $NPM_TOOLS
  echo "$NPM_TOOLS" > "$node_stamp"
fi

if command -v chromium >/dev/null 2>&1; then
  echo "setup: chromium is installed ($(chromium --version 2>/dev/null | head -1))"
else
  echo "setup: installing Debian's chromium $CHROMIUM_VERSION"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "chromium=$CHROMIUM_VERSION" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    if ! apt-get install -y -qq "chromium=$CHROMIUM_VERSION" >/dev/null 2>&1; then
      echo "setup: chromium $CHROMIUM_VERSION is gone from the archive; installing the release's current one"
      apt-get install -y -qq chromium >/dev/null
    fi
  fi
fi
