#!/usr/bin/env bash
# The GitHub Action's step (action.yml): starts an approval with `regate request start --wait`
# and hands its request id and outcome to the workflow. Inputs come as environment variables:
#   INPUT (the request file), STACK or STATE_MACHINE, TIMEOUT (optional), AUDIENCE;
#   REGATE (the CLI to run; default `regate` on PATH); GITHUB_OUTPUT (where outputs go).
# Exits as the CLI does: 0 approved or allowed, 1 rejected or denied, 3 expired, 4 still
# pending at the timeout, 2 an error.
set -uo pipefail
regate="${REGATE:-regate}"
args=(request start --input "${INPUT:?the action needs input: a request file}" --wait --format json
      --audience "${AUDIENCE:-regate}")
if [ -n "${STACK:-}" ]; then
  args+=(--stack "$STACK")
elif [ -n "${STATE_MACHINE:-}" ]; then
  args+=(--state-machine "$STATE_MACHINE")
else
  echo "error: the action needs stack or state-machine" >&2
  exit 2
fi
[ -z "${TIMEOUT:-}" ] || args+=(--timeout "$TIMEOUT")

result="$(mktemp)"
trap 'rm -f "$result"' EXIT
"$regate" "${args[@]}" >"$result"
code=$?
# One JSON document on stdout (progress went to the log on stderr); none after an early error.
read_field() {
  python3 -c 'import json, sys
try:
    value = json.load(open(sys.argv[1])).get(sys.argv[2])
except ValueError:
    value = None
print("" if value is None else value)' "$result" "$1"
}
request_id=$(read_field request_id)
outcome=$(read_field outcome)
[ -n "$outcome" ] || outcome="error"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    echo "request-id=$request_id"
    echo "outcome=$outcome"
  } >>"$GITHUB_OUTPUT"
fi
echo "regate: request ${request_id:-(none)}: $outcome (exit $code)"
exit "$code"
