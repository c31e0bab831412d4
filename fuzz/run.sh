#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) each, one after another, and prints the
# executions and crashes of each. Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable
# compiler is enough with RUSTC_BOOTSTRAP=1. Crashes land in fuzz/artifacts/TARGET/.
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
targets=${TARGETS:-$(cargo fuzz list)}
export RUSTC_BOOTSTRAP=1
for t in $targets; do
    log=$(mktemp)
    cargo fuzz run -O "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    echo "$t: exit $rc, ${runs:-?} executions in ${secs}s"
    if [ "$rc" -ne 0 ]; then tail -40 "$log"; fi
    rm -f "$log"
done
