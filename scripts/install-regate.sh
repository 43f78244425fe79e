#!/usr/bin/env bash
# Installs a released `regate` CLI for this machine, verified against the release's SHA256SUMS.
#   scripts/install-regate.sh VERSION DIR   (VERSION: 0.2.0; DIR: where bin/regate goes)
# The GitHub Action (action.yml) runs it; REGATE_RELEASES (default the project's GitHub
# releases) is where it downloads from.
set -euo pipefail
version="${1:?usage: install-regate.sh VERSION DIR}"
dir="${2:?usage: install-regate.sh VERSION DIR}"
releases="${REGATE_RELEASES:-https://github.com/regate/regate/releases/download}"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) target=x86_64-unknown-linux-musl ;;
  Linux-aarch64 | Linux-arm64) target=aarch64-unknown-linux-musl ;;
  Darwin-arm64) target=aarch64-apple-darwin ;;
  *) echo "error: no regate release for $(uname -s) $(uname -m)" >&2; exit 2 ;;
esac
asset="regate-$version-$target.tar.gz"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
curl --fail --silent --show-error --location --retry 3 -o "$work/$asset" "$releases/v$version/$asset"
curl --fail --silent --show-error --location --retry 3 -o "$work/SHA256SUMS" "$releases/v$version/SHA256SUMS"
expected=$(awk -v name="$asset" '$2 == name || $2 == "*" name { print $1 }' "$work/SHA256SUMS")
if [ -z "$expected" ]; then
  echo "error: SHA256SUMS of v$version does not list $asset" >&2
  exit 2
fi
if command -v sha256sum >/dev/null; then
  actual=$(sha256sum "$work/$asset" | awk '{ print $1 }')
else
  actual=$(shasum -a 256 "$work/$asset" | awk '{ print $1 }')
fi
if [ "$actual" != "$expected" ]; then
  echo "error: $asset does not match SHA256SUMS (got $actual, expected $expected)" >&2
  exit 2
fi
mkdir -p "$dir/bin"
tar -xzf "$work/$asset" -C "$work"
install -m 0755 "$work/regate-$version-$target/regate" "$dir/bin/regate"
echo "installed regate $version ($target, sha256 verified) in $dir/bin"
