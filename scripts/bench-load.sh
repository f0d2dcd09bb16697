#!/usr/bin/env bash
# End-to-end load benchmark (issue: performance): release builds of live-migration-guard and of
# the hand-written kube-rs baseline (examples/baseline.rs), same TLS setup, same machine, same
# run; oha as the load generator. Prints a markdown table (also target/bench/load.md).
#   DURATION=30s scripts/bench-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-bench-tools.sh
cargo build --release --locked --bin live-migration-guard --example baseline
python3 scripts/bench_load.py
