#!/usr/bin/env bash
# Builds the release archive of the `regate` CLI for one target, as the release workflow does
# (.github/workflows/release.yml), and as the checks do for linux x86_64:
#   scripts/build-cli.sh TARGET OUT_DIR
# TARGET: x86_64-unknown-linux-musl or aarch64-unknown-linux-musl (static, built with
# cargo-zigbuild and zig, pinned here), or aarch64-apple-darwin (on macOS). Writes
# OUT_DIR/regate-<version>-<target>.tar.gz holding regate-<version>-<target>/{regate, LICENSE,
# README.md, CHANGELOG.md}.
set -euo pipefail
target="${1:?usage: build-cli.sh TARGET OUT_DIR}"
out="${2:?usage: build-cli.sh TARGET OUT_DIR}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
: "${version:?no version in Cargo.toml}"

case "$target" in
  *-linux-musl)
    # Pinned: the zig toolchain links a static binary for either architecture from any host.
    venv="$root/.local/release-venv"
    if [ ! -x "$venv/bin/cargo-zigbuild" ]; then
      python3 -m venv "$venv"
      "$venv/bin/pip" install --quiet --disable-pip-version-check cargo-zigbuild==0.24.0 ziglang==0.13.0
    fi
    rustup target list --installed | grep -x "$target" >/dev/null || rustup target add "$target"
    PATH="$venv/bin:$PATH" cargo zigbuild --release --locked -p regate-cli --bin regate --target "$target"
    ;;
  *-apple-darwin)
    rustup target list --installed | grep -x "$target" >/dev/null || rustup target add "$target"
    cargo build --release --locked -p regate-cli --bin regate --target "$target"
    ;;
  *)
    echo "error: no release build for $target" >&2
    exit 2
    ;;
esac

name="regate-$version-$target"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name" "$out"
cp "target/$target/release/regate" LICENSE README.md CHANGELOG.md "$stage/$name/"
tar -czf "$out/$name.tar.gz" -C "$stage" "$name"
echo "$out/$name.tar.gz"
