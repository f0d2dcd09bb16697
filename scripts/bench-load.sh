#!/usr/bin/env bash
# End-to-end load benchmark (issue 12): release builds of live-migration-guard and of two
# baselines (examples/baseline_strong.rs: axum-server + rustls, Bytes, from_slice, to_vec;
# examples/baseline.rs: axum's Json extractor), same machine, same run, interleaved; pinned
# oha as the load generator. Prints a markdown table (also target/bench/load.md).
#   DURATION=10s ROUNDS=3 BODIES=create,mixed scripts/bench-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-bench-tools.sh
cargo build --release --locked --bin live-migration-guard --example baseline --example baseline_strong
python3 scripts/bench_load.py
