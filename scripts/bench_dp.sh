#!/usr/bin/env bash
# Data-parallel SFT on CPU: two ranks × one thread (Gloo) against one rank × two threads,
# at the same global batch, on the default model. Runs the two alternately (ROUNDS times)
# so that load from other work on the machine falls on both; step 1 of each run is
# warm-up and not counted. Prints tokens/s of each run and the mean ratio.
#
#   scripts/bench_dp.sh          # BIN=target/release/tiller STEPS=6 GLOBAL_BATCH=8 MAX_LEN=512 ROUNDS=2
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tiller=${BIN:-target/release/tiller}
model=${MODEL:-models/smollm2-135m-instruct}
data=${DATA:-datasets/sft/train.jsonl}
steps=${STEPS:-6}
global=${GLOBAL_BATCH:-8}
max_len=${MAX_LEN:-512}
rounds=${ROUNDS:-2}
work=${WORK:-runs/bench-dp}
mkdir -p "$work"
python=${TILLER_PYTHON:-$root/.venv/bin/python}
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
config() { # name per-rank-batch
  cat > "$work/$1.toml" <<TOML
model = "$model"
out = "$work/$1"
[data]
train = "$data"
max_seq_len = $max_len
collation = "padding_free"
[train]
batch_size = $2
max_steps = $steps
log_every = 1
TOML
}
tps() {
  "$python" - "$1/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
v = [r["train_tokens_per_second"] for r in rows if "train_tokens_per_second" in r][1:]
print(f"{sum(v) / len(v):.1f}")
PY
}
config one $global
config two $((global / 2))
ratios=()
for round in $(seq 1 "$rounds"); do
  rm -rf "$work/one" "$work/two"
  OMP_NUM_THREADS=2 TILLER_LOG=warn "$tiller" sft --config "$work/one.toml" > "$work/one.log" 2>&1
  OMP_NUM_THREADS=1 TILLER_LOG=warn "$tiller" sft --config "$work/two.toml" --nproc-per-node 2 > "$work/two.log" 2>&1
  a=$(tps "$work/one"); b=$(tps "$work/two")
  echo "round $round: 1 rank × 2 threads $a tokens/s; 2 ranks × 1 thread $b tokens/s (global batch $global, load $(cut -d' ' -f1 /proc/loadavg))"
  ratios+=("$("$python" -c "print($b / $a)")")
done
"$python" -c "import sys; r = [float(x) for x in sys.argv[1:]]; print(f'2 ranks / 1 rank: {sum(r) / len(r):.2f}x (rounds: {\", \".join(f\"{x:.2f}\" for x in r)})')" "${ratios[@]}"
