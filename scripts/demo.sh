#!/usr/bin/env bash
# The README's main command: sets everything up (idempotent), then runs the whole loop
# on the default model with the project's own data (examples/pipeline.toml):
# SFT -> reward model -> DPO -> short GRPO -> safety and bias evaluation of base vs aligned.
# A second run skips every stage that is unchanged; a killed run resumes.
# It ends by queuing round-2 candidates (examples/loop.toml) and printing where to vote.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
scripts/setup.sh --release
setup_done=$(date +%s)
echo
echo "==> tiller run examples/pipeline.toml"
target/release/tiller run examples/pipeline.toml
finished=$(date +%s)
echo
echo "setup $((setup_done - started))s, pipeline $((finished - setup_done))s, total $((finished - started))s"
echo "report: $(pwd)/runs/loop/eval/report.html"
echo "lineage: target/release/tiller lineage runs/loop/eval"
echo
echo "==> tiller run examples/loop.toml (round-2 candidates for your votes)"
# Exit status 3: it stopped for votes, as it should on a first run.
loop_status=0
target/release/tiller run examples/loop.toml || loop_status=$?
if [ "$loop_status" -ne 0 ] && [ "$loop_status" -ne 3 ]; then exit "$loop_status"; fi
