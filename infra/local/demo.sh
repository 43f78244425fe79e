#!/usr/bin/env bash
# README command 1: the end-to-end demo on the local stack, setup included.
#   setup (pinned tools) -> build -> start the stack and create the resources from infra/ ->
#   six requests through the real state machine -> each request's decision log, verified, then
#   the whole log against a signed checkpoint, with an HTML report.
# It leaves the stack running so you can try your own requests.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash infra/local/setup.sh
echo "== building the regate CLI and the demo driver"
cargo build --locked --quiet -p regate-cli -p regate-tests --bin regate --bin regate-demo
echo "== starting the local stack (moto, cargo lambda watch, the Slack and Teams stand-in)"
infra/local/stack up

set -a
. infra/local/local.env
set +a

status=0
target/debug/regate-demo || status=$?

echo
echo "== the decision log of each request (regate log show)"
while read -r id; do
  [ -n "$id" ] || continue
  echo
  target/debug/regate log show "$id" || status=1
done < .local/run/demo-requests.txt

echo
echo "== an auditor's check of the export (regate audit verify)"
target/debug/regate audit verify .local/run/demo-export || status=1

echo
echo "== the whole log against the signed checkpoints, with a report (--checkpoints, --report)"
# The local checkpointer cuts one at every run with no settle time (local.env).
if target/debug/regate audit verify .local/run/demo-export-all \
    --checkpoints "s3://$CHECKPOINT_BUCKET/checkpoints" --public-key "$CHECKPOINT_KEY_ID" \
    --checkpoint-minutes 1 --checkpoint-settle-seconds 0 --report .local/run/demo-report.html; then
  echo "the report: .local/run/demo-report.html (open it in a browser)"
elif [ "$(cat .local/run/demo-audit-strict 2>/dev/null)" = no ]; then
  echo "(this stack holds the tests' requests too, some made up on purpose: the findings name them)"
else
  status=1
fi

cat <<'TXT'

The stack is still running. Try your own request ("Try your own request" in the README):
start one with target/debug/regate request start, then open the local chat inbox at
http://127.0.0.1:5010/ and click Approve as alice@example.com.

Stop it with: infra/local/stack down
TXT
exit "$status"
