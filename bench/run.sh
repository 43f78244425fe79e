#!/usr/bin/env bash
# Every performance figure of BENCHMARKS.md in one command, each beside its baseline measured in
# the same run and its target. Each part leaves a table in target/bench-tables/; at the end the
# generated parts of BENCHMARKS.md (between `<!-- generated: NAME -->` and
# `<!-- end generated -->`) are replaced with them, under the date and this machine.
#
#   bash bench/run.sh                 # everything (about 30 minutes on 2 cores)
#   bash bench/run.sh opa coldstart   # some parts: opa, coldstart, size, clicks (and cost), sweep
#   REGATE_BENCH_QUICK=1 bash bench/run.sh opa   # fewer rounds, for trying things (not published)
#
# Installs what it needs, pinned: OPA's wheel (bench/opa.sh), and through infra/local/setup.sh
# the local stack's tools and cargo-lambda. valgrind comes from Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(opa coldstart size clicks sweep)
tables=target/bench-tables
mkdir -p "$tables"

wants() { local p; for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

if wants opa; then
  echo "== OPA side by side (bench/benches/opa.rs)"
  lib=$(bash bench/opa.sh)
  REGATE_OPA_LIB="$lib" cargo bench --locked -p regate-bench --bench opa
fi

if wants coldstart; then
  echo "== cold start (bench/src/bin/coldstart.rs)"
  if ! command -v valgrind >/dev/null; then
    apt-get install -y -qq valgrind >/dev/null
  fi
  cargo build --locked --release -p regate-evaluator -p regate-notifier -p regate-callback \
    -p regate-sweeper -p regate-checkpointer -p regate-bench --bins
  bin=target/release
  "$bin/coldstart" --runs 20 --callgrind --hello "$bin/hello" \
    evaluator="$bin/evaluator" notifier="$bin/notifier" callback="$bin/callback" sweeper="$bin/sweeper" checkpointer="$bin/checkpointer"
fi

if wants sweep; then
  echo "== one sweep at 1,000 and 10,000 open approvals (bench/benches/sweep.rs)"
  cargo bench --locked -p regate-bench --bench sweep
fi

if wants size; then
  echo "== package size (infra/package.sh)"
  bash infra/package.sh --table "$tables/size.md"
fi

if wants clicks; then
  echo "== click latency and the cost of an approval on a release local stack (bench/benches/clicks.rs)"
  infra/local/stack down >/dev/null 2>&1 || true
  REGATE_LOCAL_RELEASE=1 infra/local/stack up
  trap 'infra/local/stack down >/dev/null 2>&1 || true' EXIT
  set -a; . infra/local/local.env; set +a
  cargo bench --locked -p regate-bench --bench clicks
fi

python3 bench/publish.py "$tables" BENCHMARKS.md
echo "BENCHMARKS.md updated from $root/$tables"
