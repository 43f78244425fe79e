#!/usr/bin/env bash
# Builds the five functions' release zips with cargo lambda (arm64, as the template deploys
# them) and checks each against the 5 MB budget (5,000,000 bytes): a function's zip is what a
# cold start downloads. Part of the infrastructure checks; `bench/run.sh size` runs it too.
#   bash infra/package.sh [--table FILE]   # FILE: the sizes as a markdown table
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
table=""
[ "${1:-}" = "--table" ] && table="$2"
bash infra/local/setup.sh >/dev/null

arch_flag="--arm64"
if ! rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$'; then
  if ! timeout 120 rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
    echo "note: the aarch64 standard library cannot be installed on this machine; building for x86_64 instead"
    arch_flag="--x86-64"
  fi
fi
PATH="$root/.local/venv/bin:$PATH" cargo lambda build --release $arch_flag --output-format zip --locked \
  --bin evaluator --bin notifier --bin callback --bin sweeper --bin checkpointer

limit=5000000
over=0
rows="| function | release zip (${arch_flag#--}) | target |\n|---|---:|---|\n"
for function in evaluator notifier callback sweeper checkpointer; do
  zip="target/lambda/$function/bootstrap.zip"
  size=$(stat -c %s "$zip")
  verdict="ok"
  if [ "$size" -gt "$limit" ]; then verdict="OVER the 5 MB budget"; over=$((over + 1)); fi
  printf '%-10s %9d bytes (%s) %s\n' "$function" "$size" "$arch_flag" "$verdict"
  rows+="| $function | $(python3 -c "print(f'{$size:,}')") bytes | ≤ 5,000,000 bytes |\n"
done
[ -z "$table" ] || printf "$rows" > "$table"
if [ "$over" -gt 0 ]; then
  echo "package: $over zip(s) over 5,000,000 bytes"
  exit 1
fi
