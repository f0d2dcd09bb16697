#!/usr/bin/env bash
# Instructions per admission request, counted by valgrind's callgrind (issue 12): unlike
# timings they do not depend on what else the machine runs, so they compare layers and
# builds on a shared machine. Each figure is (count at N2 - count at N1) / (N2 - N1), so
# start-up (facts, TLS set-up) cancels out.
#
# - the evaluator (benches/evaluate.rs, EVALUATE_LOOP): one evaluation per case;
# - in process (benches/admission.rs, ADMISSION_LOOP): `review` (admission::review alone),
#   `router-logging` (the whole axum router with serve's default log line), `strong` (what
#   examples/baseline_strong.rs does per request);
# - end to end (E2E=1): the release server under callgrind, oha sending N requests over
#   8 keep-alive TLS connections; user-space instructions of the whole process (TLS, hyper,
#   the router, the log writer thread), for ours and the strong baseline. Kernel work is
#   not counted: compare system calls with `strace -c -f` (same number of reads and
#   writes per request for both servers since the log writer batches).
#
#   scripts/bench-instructions.sh            # the evaluator and the serving path, in process
#   EVALUATOR=0 scripts/bench-instructions.sh   # the serving path only
#   E2E=1 scripts/bench-instructions.sh      # and end to end (needs scripts/install-bench-tools.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (Debian package valgrind)" >&2; exit 1; }
N1=${N1:-100}
N2=${N2:-600}
bench_exe() { # the executable of benchmark $1
  cargo bench --locked --bench "$1" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
bench=$(bench_exe admission)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { grep -o "Collected : [0-9]*" "$1" | tail -1 | awk '{print $3}'; }
per_request() { python3 -c "print(f'{($2 - $1) / ($4 - $3) / 1000:.1f}k')" "$@"; }

if [[ "${EVALUATOR:-1}" == 1 ]]; then
  # The evaluator alone (benches/evaluate.rs, EVALUATE_LOOP), 1,000 classes in the facts.
  evaluate=$(bench_exe evaluate)
  echo "| evaluator case | instructions per call |"
  echo "|---|---:|"
  for case in nodepool/default-class-migratable nodepool/rwo-not-migratable hostedcluster/manual-mapping batch/hostedcluster-with-2-sibling-nodepools; do
    for n in "$N1" "$N2"; do
      EVALUATE_LOOP="$case:$n" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$evaluate" >"$tmp/$n.log" 2>&1
    done
    echo "| $case | $(per_request "$(count "$tmp/$N1.log")" "$(count "$tmp/$N2.log")" "$N1" "$N2") |"
  done
  echo
fi

echo "| path (in process) | instructions per request |"
echo "|---|---:|"
for path in review/create review/update router-logging/create router-logging/update strong/create strong/update; do
  for n in "$N1" "$N2"; do
    ADMISSION_LOOP="$path:$n" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bench" >"$tmp/$n.log" 2>&1
  done
  echo "| $path | $(per_request "$(count "$tmp/$N1.log")" "$(count "$tmp/$N2.log")" "$N1" "$N2") |"
done

[[ "${E2E:-0}" == 1 ]] || exit 0
scripts/install-bench-tools.sh
cargo build --release --locked --bin live-migration-guard --example baseline_strong
python3 -c 'import sys; sys.path.insert(0, "scripts"); import bench_load, pathlib; bench_load.write_facts(pathlib.Path(sys.argv[1]))' "$tmp/facts.yaml"
body=examples/requests/nodepool-realistic-create.json
e2e() { # name port n -- server command (writes its CA bundle to $tmp/$name-ca.crt)
  local name=$1 port=$2 n=$3
  shift 4
  rm -f "$tmp/$name-ca.crt"
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" >"$tmp/$name.$n.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    if [[ -s "$tmp/$name-ca.crt" ]] && .tools/bin/oha -n 1 -c 1 --no-tui -m POST -T application/json -D "$body" \
      --cacert "$tmp/$name-ca.crt" --http-version 1.1 "https://localhost:$port/validate/nodepools" 2>/dev/null | grep -q '\[200\]'; then
      break
    fi
    sleep 0.5
  done
  .tools/bin/oha -n "$n" -c 8 --no-tui -m POST -T application/json -D "$body" --cacert "$tmp/$name-ca.crt" \
    --http-version 1.1 "https://localhost:$port/validate/nodepools" >/dev/null
  kill -TERM "$pid"
  wait "$pid" || true
}
echo
echo "| server (end to end, CREATE, 8 connections) | user-space instructions per request |"
echo "|---|---:|"
for n in 200 1200; do
  e2e ours 18655 "$n" -- target/release/live-migration-guard serve --listen=127.0.0.1:18655 --ops-listen=127.0.0.1:18656 \
    "--facts=$tmp/facts.yaml" "--ca-bundle-out=$tmp/ours-ca.crt" --shutdown-delay=0s
  e2e strong 19655 "$n" -- target/release/examples/baseline_strong 127.0.0.1:19655 "$tmp/strong-ca.crt"
done
for name in ours strong; do
  echo "| $name | $(per_request "$(count "$tmp/$name.200.log")" "$(count "$tmp/$name.1200.log")" 200 1200) |"
done
