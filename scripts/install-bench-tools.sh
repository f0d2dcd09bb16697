#!/usr/bin/env bash
# Installs the pinned load generator for scripts/bench-load.sh and scripts/soak.sh:
# oha 1.16.0 from crates.io (cargo install --locked; ~4 minutes on 2 cores), into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
readonly OHA_VERSION=1.16.0
if [[ -x .tools/bin/oha ]] && [[ "$(.tools/bin/oha --version)" == "oha $OHA_VERSION" ]]; then
  exit 0
fi
echo "install-bench-tools: building oha $OHA_VERSION (cargo install --locked)"
cargo install oha --version "$OHA_VERSION" --locked --root .tools/oha-build --quiet
mkdir -p .tools/bin
ln -sf ../oha-build/bin/oha .tools/bin/oha
.tools/bin/oha --version
