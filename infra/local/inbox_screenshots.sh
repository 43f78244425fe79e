#!/usr/bin/env bash
# Pictures of the local chat inbox for the docs (docs/images/inbox-*.png and inbox.png), taken
# with headless Chromium (tests/browser/page_check.py) on the running local stack after the demo
# (`bash infra/local/demo.sh`): a Slack message waiting for approval, a Teams card, an approved
# card, and a reminder in a message's thread.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
set -a
. infra/local/local.env
set +a
requests=".local/run/demo-requests.txt"
[ -f "$requests" ] || { echo "run the demo first: bash infra/local/demo.sh" >&2; exit 2; }
deploy=$(grep '^demo-deploy-' "$requests" | tail -n 1)
teams=$(grep '^demo-teams-' "$requests" | tail -n 1)
escalate=$(grep '^demo-escalate-' "$requests" | tail -n 1)

# A fresh request, left open, for the pictures of a message and a card waiting for approval.
export REGATE_STATE_MACHINE_ARN
REGATE_STATE_MACHINE_ARN=$(python3 -c "import json; print(json.load(open('.local/run/resources.json'))['state_machine_arn'])")
export ACTIONS_ID_TOKEN_REQUEST_URL="$REGATE_TRUSTED_ISSUERS/token?actor=dev&repository=acme/payments&ref=refs/heads/main"
open_id="docs-picture-$(date +%s)"
change=$(mktemp)
echo "{\"id\": \"$open_id\", \"action\": \"deploy\", \"environment\": \"production\",
  \"resource\": {\"type\": \"service\", \"name\": \"payments\"}, \"requester\": {\"id\": \"dev@example.com\", \"kind\": \"human\"},
  \"summary\": \"Deploy payments v2.0.0\", \"links\": [{\"title\": \"Pipeline\", \"url\": \"https://ci.example.com/runs/1\"}]}" > "$change"
target/debug/regate request start --input "$change" >/dev/null
rm -f "$change"

shot() {
  local name="$1" query="$2"
  local out="docs/images/inbox-$name.png"
  local result
  result=$(.local/venv/bin/python tests/browser/page_check.py "http://127.0.0.1:5010/?$query" --screenshot "$out" \
    --width 1100 --height 700 --eval 'shown=new Promise((r) => setTimeout(() => r(document.querySelectorAll(".msg").length), 1500))')
  echo "$name: $result"
  python3 -c 'import json, sys; v = json.loads(sys.argv[1]); sys.exit(0 if v["values"]["shown"] and not v["console_errors"] else 1)' "$result" \
    || { echo "the inbox showed nothing for $name, or logged an error" >&2; exit 1; }
}
shot slack-message "request=$open_id&platform=slack&as=alice@example.com"
shot teams-card "request=$open_id&platform=teams&as=alice@example.com"
shot approved "request=$deploy&platform=slack"
shot reminder "request=$escalate&platform=slack"
shot teams-approved "request=$teams&platform=teams"
.local/venv/bin/python tests/browser/page_check.py "http://127.0.0.1:5010/?request=$open_id&as=dev@example.com" \
  --screenshot docs/images/inbox.png --width 1280 --height 800 \
  --eval 'shown=new Promise((r) => setTimeout(() => r(document.querySelectorAll(".msg").length), 1500))' >/dev/null
echo "docs/images/inbox*.png written"
