#!/usr/bin/env bash
# Scale measurement (issue: live cluster facts): a release `serve --cluster=on` process caching
# 10,000 StorageClasses + StorageProfiles and 1,000 NodePools from the fake API server; prints
# its RSS and the evaluation time, and fails above 80 MiB or 5 µs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked --test scale -- --nocapture 2>&1 | grep -E "^scale:|test result|panicked|assert"
