#!/usr/bin/env bash
# Runs every regate test: the workspace's unit and integration tests, then the policy
# bundle's own Rego tests. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace)"
cargo test --workspace --locked

echo "== regate policy test policies"
cargo run --quiet --locked -p regate-cli -- policy test policies
