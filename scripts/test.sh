#!/usr/bin/env bash
# The project's test command (the README's second set-up command; `.ci/run` calls it).
# Installs the pinned test tools (helm, Python packages, and with Go the real kube-apiserver test
# cluster + kubectl) into .tools/, then runs every test:
# the Rust unit, integration, property and benchmark-smoke tests, then the Helm chart tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-tools.sh
cargo test --locked --all-targets --no-fail-fast
PATH="$PWD/.tools/bin:$PATH" .tools/venv/bin/python -m pytest -q tests/chart
