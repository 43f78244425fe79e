#!/usr/bin/env bash
# Runs every regate test. This is the README's test command; .ci/run calls it.
#  1. installs the local stack's pinned tools (infra/local/setup.sh; a no-op when up to date);
#  2. starts the local AWS stack unless it is already running, and stops it at the end if it
#     started it;
#  3. runs the workspace's unit, integration and end-to-end tests against it;
#  4. runs the policy bundle's own Rego tests;
#  5. runs the infrastructure checks (infra/checks.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== setup: pinned tools for the local stack"
bash infra/local/setup.sh

started_stack=no
if ! infra/local/stack status >/dev/null 2>&1; then
  echo "== starting the local stack"
  infra/local/stack up
  started_stack=yes
fi
stop_stack() {
  status=$?
  if [ "$status" -ne 0 ]; then
    # CI keeps only this output: the functions' warnings and errors say why a stack test failed.
    echo "== the functions' last warnings and errors (.local/logs/functions.log)"
    # (lambda_runtime's start-up note about AWS_LAMBDA_MAX_CONCURRENCY, one per instance, is not one.)
    grep -E " (WARN|ERROR) " .local/logs/functions.log 2>/dev/null | grep -v AWS_LAMBDA_MAX_CONCURRENCY \
      | tail -n 40 | cut -c1-400 || true
  fi
  if [ "$started_stack" = yes ]; then
    echo "== stopping the local stack"
    infra/local/stack down || true
  fi
}
trap stop_stack EXIT

# The tests and the CLI reach the stack through the standard AWS settings.
set -a
# shellcheck source=../infra/local/local.env
. infra/local/local.env
set +a

echo "== cargo test (workspace)"
cargo test --workspace --locked

echo "== regate policy test policies"
cargo run --quiet --locked -p regate-cli -- policy test policies

echo "== infrastructure checks"
bash infra/checks.sh
