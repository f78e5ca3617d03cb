#!/usr/bin/env bash
# Measures what the issue notes report: release binary size, wall time of `shiftgate demo`
# (median of N runs per scenario), and Cloud Run / Monitoring API calls per rollout step.
# Usage: scripts/bench.sh [RUNS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release --quiet
binary=target/release/shiftgate
echo "binary: $(stat -c %s "$binary") bytes ($(du -h "$binary" | cut -f1))"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

for scenario in good bad unhealthy; do
  times=()
  for _ in $(seq "$runs"); do
    start=$(date +%s.%N)
    "$binary" demo --scenario "$scenario" --json >"/tmp/shiftgate-demo-$scenario.json" 2>/dev/null || true
    end=$(date +%s.%N)
    times+=("$(awk "BEGIN {print $end - $start}")")
  done
  wall=$(printf '%s\n' "${times[@]}" | median)
  python3 - "$scenario" "$wall" <<'PY'
import json, sys
scenario, wall = sys.argv[1], float(sys.argv[2])
result = json.load(open(f"/tmp/shiftgate-demo-{scenario}.json"))
steps = max(len(result["steps"]), 1)
calls = result["api_calls"]
print(f"demo {scenario:<9} outcome={result['outcome']:<11} median wall={wall:5.1f}s "
      f"steps={len(result['steps'])} cloud_run_calls={calls['cloud_run']} monitoring_calls={calls['monitoring']} "
      f"per step: {calls['cloud_run']/steps:.1f} cloud run, {calls['monitoring']/steps:.1f} monitoring")
PY
done
