#!/usr/bin/env bash
# Soak test (issue: reliability): DURATION seconds (default 600) of mixed valid and invalid
# traffic against a release server; fails on a crash, a failed valid request, a 5xx or
# dropped connection, or RSS growth of 10% or more after warm-up.
#   DURATION=60 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-bench-tools.sh
cargo build --release --locked --bin live-migration-guard
python3 scripts/soak.py
