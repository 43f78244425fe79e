#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with cargo-fuzz on a nightly toolchain.
# Without nightly it says so in one line and succeeds: the same parsers are covered on stable
# by property tests (proptest) that `cargo test` runs.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped, no nightly toolchain here (rustup toolchain install nightly); property tests cover the same parsers"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  # Without --locked: cargo-fuzz's locked rustix no longer builds on current nightlies.
  cargo +nightly install cargo-fuzz --version 0.13.1
fi
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds"
done
