#!/usr/bin/env bash
# Time from SIGINT to the binary's exit with stable traffic confirmed, at moments sampled across a
# rollout, against the simulator on loopback. Usage: scripts/interrupt-timing.sh [RUNS] (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
export SHIFTGATE_TIMING_RUNS="${1:-10}"
cargo test --test scenarios -- --ignored --nocapture cli::interrupt_timing_sample 2>&1 |
  grep -E '^SIGINT|test result'
