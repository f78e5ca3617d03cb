#!/usr/bin/env bash
# Measures the release binary: its size, and its start-up time (hyperfine when installed, else a
# timed loop) for `--version` (parse and exit) and for `status` against a local HTTP server that
# answers 404 (the tokio runtime, the HTTP client with its TLS roots, one request, exit 2 or 3).
# Usage: scripts/measure.sh [BINARY]   (default: builds target/release/shiftgate)
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-}"
if [[ -z "$binary" ]]; then
  cargo build --release --locked --quiet
  binary="${CARGO_TARGET_DIR:-target}/release/shiftgate"
fi
bytes=$(wc -c <"$binary")
echo "binary: $binary"
echo "size: $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }'))"
file "$binary" 2>/dev/null || true

# A loopback server that answers 404 to everything (a refused connection would be retried).
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
empty="$(mktemp -d)"
python3 -m http.server --bind 127.0.0.1 --directory "$empty" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; rm -rf "$empty"' EXIT
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done
export SHIFTGATE_CLOUD_RUN_URL="http://127.0.0.1:$port" SHIFTGATE_MONITORING_URL="http://127.0.0.1:$port"
status=("$binary" status --project p --region r --service s --json)

if command -v hyperfine >/dev/null 2>&1; then
  hyperfine --warmup 5 --runs 100 --shell=none --ignore-failure \
    "$binary --version" "${status[*]}"
else
  for name in version status; do
    start=$(date +%s%N)
    for _ in $(seq 100); do
      if [[ $name == version ]]; then "$binary" --version >/dev/null; else "${status[@]}" >/dev/null 2>&1 || true; fi
    done
    end=$(date +%s%N)
    echo "$name: $(((end - start) / 100000)) µs per run (mean of 100)"
  done
fi
