#!/usr/bin/env bash
# Fuzzes the parsers of outside data (Cloud Run, Monitoring, Prometheus answers; health bodies)
# with cargo-fuzz (libFuzzer), SECONDS per target (default 60), and prints the executions each
# target ran. Crashing inputs land in fuzz/artifacts/TARGET/; add them to tests/parsers.rs.
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly toolchain; without
# nightly, stable is used with RUSTC_BOOTSTRAP=1. No sanitizer is used (`--sanitizer none`):
# the code under test is safe Rust, and the build is much quicker. Without cargo-fuzz at all, the
# property tests are run instead with PROPTEST_CASES=100000.
set -uo pipefail

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(cloudrun_service monitoring_timeseries prometheus_answer health_judge)
fi
root=$(cd "$(dirname "$0")/.." && pwd)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: running the property tests with PROPTEST_CASES=100000 instead" >&2
  cd "$root" && PROPTEST_CASES=100000 exec cargo test --test scenarios -- --nocapture parsers::
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

cd "$root/fuzz" || exit 2
echo "== building the fuzz targets" >&2
cargo "${toolchain[@]}" fuzz build --sanitizer none || exit 2

status=0
summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  if [ -d "seeds/$target" ]; then
    cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
  fi
  log=$(mktemp)
  echo "== $target for ${seconds}s" >&2
  cargo "${toolchain[@]}" fuzz run --sanitizer none "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 -max_len=8192 >"$log" 2>&1
  code=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  if [ $code -eq 0 ]; then
    summary+=("$target: ${runs:-?} executions in ${seconds}s (${rate:-?} exec/s), no crash")
  else
    status=1
    artifact=$(grep -o 'artifacts/[^ ]*' "$log" | tail -1)
    summary+=("$target: CRASH after ${runs:-?} executions: fuzz/${artifact:-artifacts/$target}")
    grep -m5 -E 'panicked|ERROR' "$log" >&2
  fi
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit $status
