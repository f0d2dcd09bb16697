#!/usr/bin/env bash
# Runs the README's test command (scripts/test.sh) N times in a row and reports every run, to
# show the suite is deterministic (issue 12: a test that fails one run in ten is a bug).
# Every run goes to the end (cargo test --no-fail-fast); the script exits non-zero if any failed.
#   scripts/test-repeat.sh 20            # logs in target/test-repeat/run-<k>.log
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
out=target/test-repeat
mkdir -p "$out"
failed=0
for k in $(seq 1 "$n"); do
  start=$(date +%s)
  if scripts/test.sh >"$out/run-$k.log" 2>&1; then result=passed; else result=FAILED; failed=$((failed + 1)); fi
  rust=$(grep -E '^test result' "$out/run-$k.log" | awk '{p += $4; f += $6} END {printf "%d passed, %d failed", p, f}')
  chart=$(grep -E '[0-9]+ passed' "$out/run-$k.log" | grep -v '^test result' | tail -1)
  echo "run $k/$n: $result in $(($(date +%s) - start)) s (Rust: $rust; chart: ${chart:-none}; load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/summary.txt"
  [[ $result == passed ]] || grep -E '^(test .* FAILED|---- .* stdout ----|failures:)' "$out/run-$k.log" | head -20
done
echo "$((n - failed)) of $n runs passed" | tee -a "$out/summary.txt"
[[ $failed -eq 0 ]]
