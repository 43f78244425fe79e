#!/usr/bin/env bash
# Installs every tool the local stack needs, pinned, into project-local folders that git
# ignores (.local/). Running it again changes nothing unless the pins changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.local/venv"
requirements="$root/infra/local/requirements.txt"
stamp="$venv/.regate-requirements"

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup: python3 is required to build the local stack's venv, and it is not on PATH" >&2
  exit 1
fi

if [ -f "$stamp" ] && cmp -s "$stamp" "$requirements"; then
  echo "setup: $venv is up to date"
  exit 0
fi

echo "setup: creating $venv with the pins in infra/local/requirements.txt"
mkdir -p "$root/.local"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip==24.3.1
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
echo "setup: done ($("$venv/bin/python" -c 'import moto; print("moto", moto.__version__)'), $("$venv/bin/cargo-lambda" lambda --version 2>/dev/null || echo 'cargo-lambda installed'))"
