#!/usr/bin/env bash
# The README's test command: sets everything up (idempotent) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser
cargo test --workspace "$@"
