#!/usr/bin/env bash
# The README's main command: sets everything up (idempotent) and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --release
model=models/smollm2-135m-instruct
echo
echo "==> tiller generate --model $model --prompt 'Give me three tips for writing clear code.'"
target/release/tiller generate --model "$model" --prompt "Give me three tips for writing clear code." --max-new-tokens 160
