#!/usr/bin/env bash
# Build and run figures of shiftgate, for the working tree or a git revision: clean debug build
# time, incremental rebuild after touching the judge, clean release build time, binary size, crate
# count and duplicate crates, then start-up time of `--version` and of `status` against a local
# server that answers 404 (runtime, HTTP client with TLS roots, one request).
# Usage: scripts/measure.sh [--rev REV]   (each run builds in a fresh target directory: minutes)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
checkout="$root"
work="$(mktemp -d)"
cleanup() {
  [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null
  [[ "$checkout" != "$root" ]] && git -C "$root" worktree remove --force "$checkout" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
if [[ "${1:-}" == "--rev" ]]; then
  checkout="$work/checkout"
  git -C "$root" worktree add --detach --quiet "$checkout" "$2"
  echo "revision: $(git -C "$checkout" log --oneline -1)"
fi
cd "$checkout"
export CARGO_TARGET_DIR="$work/target" CARGO_TERM_COLOR=never

seconds() { local start=$1; awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f s", e - s }'; }
judge=$(ls src/rollout/judge.rs 2>/dev/null || echo src/rollout/engine.rs)

cargo fetch --locked --quiet
start=$(date +%s.%N); cargo build --locked --quiet -p shiftgate
echo "clean debug build: $(seconds "$start")"
touch "$judge"
start=$(date +%s.%N); cargo build --locked --quiet -p shiftgate
echo "incremental debug rebuild after touching $judge: $(seconds "$start")"
start=$(date +%s.%N); cargo build --release --locked --quiet -p shiftgate
echo "clean release build: $(seconds "$start")"
binary="$CARGO_TARGET_DIR/release/shiftgate"
bytes=$(wc -c <"$binary")
echo "release binary: $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }'))"
crates=$(cargo tree --locked -p shiftgate -e normal,build --prefix none --no-dedupe | sed 's/ (\*)//' | sort -u | wc -l)
echo "crates the binary builds (normal and build dependencies, shiftgate's own included): $crates"
echo "duplicate crates (cargo tree -d -e normal): $(cargo tree --locked -p shiftgate -d -e normal |
  grep -E '^[a-z]' | awk '{print $1}' | sort -u | tr '\n' ' ')"
echo "C/C++ crypto: $(cargo tree --locked -p shiftgate -e normal,build --prefix none | grep -oE '^(aws-lc-sys|aws-lc-rs|ring) v[0-9.]+' | sort -u | tr '\n' ' ')"

# A loopback server that answers 404 to everything (a refused connection would be retried).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
mkdir -p "$work/empty"
python3 -m http.server --bind 127.0.0.1 --directory "$work/empty" "$port" >/dev/null 2>&1 &
server=$!
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done
export SHIFTGATE_CLOUD_RUN_URL="http://127.0.0.1:$port" SHIFTGATE_MONITORING_URL="http://127.0.0.1:$port"
status=("$binary" status --project p --region r --service s --json)
if command -v hyperfine >/dev/null 2>&1; then
  hyperfine --warmup 5 --runs 100 --shell=none --ignore-failure "$binary --version" "${status[*]}"
else
  for name in version status; do
    start=$(date +%s%N)
    for _ in $(seq 100); do
      if [[ $name == version ]]; then "$binary" --version >/dev/null; else "${status[@]}" >/dev/null 2>&1 || true; fi
    done
    echo "$name: $((($(date +%s%N) - start) / 100000)) µs per run (mean of 100)"
  done
fi
