#!/usr/bin/env bash
# Infrastructure checks (part of the README's test command):
#   cfn-lint and `sam validate --lint` on the SAM template, asl-validator on the state machine,
#   the cfn-guard rules in infra/guard/ (the template passes; each example in
#   infra/guard/examples/ fails exactly the rules its first line names), the Athena named
#   queries against their files (infra/athena/), and the release
#   packaging of the five functions with cargo lambda, each zip within 5 MB, actionlint on the
#   workflows, the release CLI archive for linux x86_64 as the release workflow builds it,
#   `sam build` from samconfig.toml as a user runs it, and the book (docs/build.sh).
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

echo "== actionlint: the release and CI workflows, and the example workflows in docs/examples"
"$checks/actionlint" -no-color .github/workflows/*.yml docs/examples/*.yml && echo "ok" || fail "actionlint"
echo "== action.yml: a composite action with the inputs and outputs the README documents"
"$checks/python" - <<'PY' || fail "action.yml"
import yaml
action = yaml.safe_load(open("action.yml"))
assert action["runs"]["using"] == "composite", action["runs"]
assert set(action["inputs"]) >= {"input", "stack", "state-machine", "timeout"}, action["inputs"]
assert set(action["outputs"]) == {"request-id", "outcome"}, action["outputs"]
for step in action["runs"]["steps"]:
    assert step.get("shell") == "bash", step
print("ok: inputs", sorted(action["inputs"]), "outputs", sorted(action["outputs"]))
PY

echo "== the linux CLI release archive, built as the release workflow builds it (scripts/build-cli.sh)"
archive=$(bash scripts/build-cli.sh x86_64-unknown-linux-musl "$root/.local/dist" 2>"$root/.local/build-cli.log" | tail -n 1) || archive=""
if [ -n "$archive" ] && [ -f "$archive" ]; then
  unpacked=$(mktemp -d)
  tar -xzf "$archive" -C "$unpacked"
  binary=$(find "$unpacked" -name regate -type f | head -n 1)
  if ! { ldd "$binary" 2>&1 || true; } | grep -q "not a dynamic executable"; then
    fail "the release CLI is not static"
  elif ! "$binary" --version | grep -q "^regate "; then
    fail "the release CLI does not run"
  else
    echo "ok: $(basename "$archive"), static, $("$binary" --version)"
  fi
  rm -rf "$unpacked"
else
  tail -n 20 "$root/.local/build-cli.log"
  fail "building the release CLI"
fi

echo "== sam build, as a user runs it (samconfig.toml: the template, the rust-cargolambda beta opt-in)"
sam_build="$root/.local/sam-build"
rm -rf "$sam_build"
if PATH="$root/.local/venv/bin:$checks:$PATH" "$checks/sam" build --build-dir "$sam_build" </dev/null >"$root/.local/sam-build.log" 2>&1; then
  built=0
  for function in EvaluatorFunction NotifierFunction CallbackFunction SweeperFunction CheckpointerFunction; do
    [ -x "$sam_build/$function/bootstrap" ] && built=$((built + 1)) || fail "sam build made no $function/bootstrap"
  done
  [ -f "$sam_build/template.yaml" ] || fail "sam build wrote no template"
  echo "ok: $built functions built (log: .local/sam-build.log)"
else
  tail -n 20 "$root/.local/sam-build.log"
  fail "sam build"
fi

echo "== the book (docs/build.sh): mdbook build, every link checked, the first page in Chromium"
bash docs/build.sh >"$root/.local/book-build.log" 2>&1 && tail -n 2 "$root/.local/book-build.log" \
  || { tail -n 20 "$root/.local/book-build.log"; fail "the book"; }

if [ "$failures" -gt 0 ]; then
  echo "infrastructure checks: $failures failed"
  exit 1
fi
echo "infrastructure checks: all passed"
