#!/usr/bin/env bash
# Infrastructure checks (part of the README's test command):
#   cfn-lint and `sam validate --lint` on the SAM template, asl-validator on the state machine,
#   the cfn-guard rules in infra/guard/ (the template passes; each example in
#   infra/guard/examples/ fails exactly the rules its first line names), the Athena named
#   queries against their files (infra/athena/), and the release
#   packaging of the five functions with cargo lambda, each zip within 5 MB.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash infra/local/setup.sh >/dev/null

checks="$root/.local/checks-venv/bin"
node="$root/.local/node/node_modules"
export SAM_CLI_TELEMETRY=0
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

echo "== cfn-lint infra/template.yaml"
"$checks/cfn-lint" infra/template.yaml && echo "ok" || fail "cfn-lint"

echo "== sam validate --lint"
"$checks/sam" validate --lint --region us-east-1 -t infra/template.yaml || fail "sam validate --lint"

echo "== asl-validator infra/statemachine/approval.asl.json"
"$node/.bin/asl-validator" --json-path infra/statemachine/approval.asl.json || fail "asl-validator"

case "$(uname -m)" in
  aarch64|arm64) guard_arch=aarch64 ;;
  *) guard_arch=x86_64 ;;
esac
guard="$node/@cdklabs/cdk-validator-cfnguard/bin/ubuntu/$guard_arch/cfn-guard"
echo "== cfn-guard: the template passes every rule"
if "$guard" validate -r infra/guard -d infra/template.yaml --show-summary fail; then
  echo "ok"
else
  fail "the template breaks a guard rule"
fi
echo "== cfn-guard: every rule bites (infra/guard/examples)"
for example in infra/guard/examples/*.yaml; do
  # The first line of each example says which rules it must fail: "# Fails: rule_a rule_b".
  expected=$(sed -n '1s/^# Fails: *//p' "$example" | awk '{for (i = 1; i <= NF && $i !~ /^\(/; i++) print $i}' | sort -u)
  output=$("$guard" validate -r infra/guard -d "$example" --show-summary fail 2>&1 || true)
  failed=$( (echo "$output" | grep -oE 'guard/[a-z0-9_]+ +FAIL' || true) | sed -E 's#guard/([a-z0-9_]+) +FAIL#\1#' | sort -u)
  if [ -n "$expected" ] && [ "$expected" = "$failed" ]; then
    echo "ok: $(basename "$example") fails $(echo "$failed" | tr '\n' ' ')"
  else
    fail "$(basename "$example") should fail [$(echo "$expected" | tr '\n' ' ')] and failed [$(echo "$failed" | tr '\n' ' ')]"
  fi
done

echo "== the Teams app package (infra/teams/package.py)"
package_dir=$(mktemp -d)
python3 infra/teams/package.py --app-id 00000000-0000-4000-8000-000000000001 --out "$package_dir" >/dev/null
python3 - "$package_dir/regate-teams.zip" <<'PY' || fail "the Teams app package is not what Teams accepts"
import json, struct, sys, zipfile
package = zipfile.ZipFile(sys.argv[1])
assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"], package.namelist()
manifest = json.loads(package.read("manifest.json"))
assert manifest["bots"][0]["botId"] == manifest["id"] == "00000000-0000-4000-8000-000000000001"
assert len(manifest["name"]["short"]) <= 30
for name, size in [("color.png", 192), ("outline.png", 32)]:
    data = package.read(name)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (size, size), name
print("ok: manifest and icons (color 192x192, outline 32x32)")
PY
if python3 infra/teams/package.py --app-id not-a-guid --out "$package_dir" >/dev/null 2>&1; then
  fail "package.py accepted an app id that is not a GUID"
fi
rm -rf "$package_dir"

echo "== Athena: the template's named queries are infra/athena/queries/"
"$checks/python" infra/athena/queries.py check-template infra/template.yaml || fail "athena named queries"

echo "== packaging: release zips with cargo lambda, each at most 5 MB (infra/package.sh)"
bash infra/package.sh || fail "packaging"

if [ "$failures" -gt 0 ]; then
  echo "infrastructure checks: $failures failed"
  exit 1
fi
echo "infrastructure checks: all passed"
