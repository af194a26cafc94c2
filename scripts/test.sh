#!/usr/bin/env bash
# The README's test command: sets everything up (idempotent) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser
scripts/test_venv.sh
# Tests run in parallel threads; libtorch's own thread pool on top of them oversubscribes
# two cores (its OpenMP workers spin while they wait), so each op gets one thread here.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cargo test --workspace "$@"
# The GPU check's CPU mode (tiny shapes, < 2 minutes), so that script cannot rot.
cargo build --example random_model
scripts/gpu_check.sh --cpu --bin target/debug
