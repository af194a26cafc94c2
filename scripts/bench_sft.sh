#!/usr/bin/env bash
# SFT training throughput, tiller next to TRL's SFTTrainer in one run: same model, data,
# batch size and sequence length, on CPU in f32. Reports real (non-padding) tokens/s and
# the share of the machine's f32 matmul roofline (SFT FLOPs ≈ 6 × params × tokens).
#
#   scripts/bench_sft.sh            # STEPS=6 BATCH=8 MAX_LEN=1024 (TRL's defaults), PROFILE=release
#
# TRL is installed from PyPI into .venv-bench (scripts/bench/common.sh).
# Step 1 of each run is warm-up and not timed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${MODEL:-models/smollm2-135m-instruct}
data=${DATA:-datasets/sft/train.jsonl}
steps=${STEPS:-6}
batch=${BATCH:-8}
max_len=${MAX_LEN:-1024}
work=${WORK:-runs/bench-sft}
torch_python=${TILLER_PYTHON:-$root/.venv/bin/python}
mkdir -p "$work"
source scripts/bench/common.sh

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== TRL SFTTrainer (defaults; batch $batch, max_length $max_len, $steps steps)"
trl_json=$(.venv-bench/bin/python scripts/bench_sft_trl.py "$model" "$data" "$steps" "$batch" "$max_len" "$work/trl" | tail -n 1)
echo "$trl_json"
echo "== TRL SFTTrainer (defaults but bf16 = False: f32 like tiller)"
trl32_json=$(.venv-bench/bin/python scripts/bench_sft_trl.py "$model" "$data" "$steps" "$batch" "$max_len" "$work/trl32" f32 | tail -n 1)
echo "$trl32_json"

run_tiller() { # name loss_on collation
  cat > "$work/$1.toml" <<TOML
model = "$model"
out = "$work/$1"
[data]
train = "$data"
max_seq_len = $max_len
loss_on = "$2"
collation = "$3"
[train]
batch_size = $batch
max_steps = $steps
log_every = 1
shuffle = true
TOML
  TILLER_LOG=warn "$tiller" sft --config "$work/$1.toml" > /dev/null
}

echo "== tiller sft"
for variant in "all-padfree all padding_free" "completion-padfree completion padding_free" "all-padding all padding"; do
  set -- $variant
  run_tiller "tiller-$1" "$2" "$3"
done

.venv-bench/bin/python - "$work" "$trl_json" "$trl32_json" <<'PY'
import json, sys
work, trl, trl32 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
params, roof = trl["params"], trl["matmul_gflops"]
print(f"matmul roofline (torch f32, {trl['torch_threads']} threads): {roof:.1f} GFLOP/s; params {params/1e6:.1f}M")
print(f"TRL     {trl['trl_tokens_per_second']:8.1f} tok/s  roofline {100*trl['trl_roofline_share']:.0f}%  "
      f"(grad ckpt {trl['trl_gradient_checkpointing']}, bf16 {trl['trl_bf16']}, padding_free {trl['trl_padding_free']}, "
      f"assistant_only_loss {trl['trl_assistant_only_loss']})")
print(f"TRL f32 {trl32['trl_tokens_per_second']:8.1f} tok/s  roofline {100*trl32['trl_roofline_share']:.0f}%  (defaults, bf16 False)")
for name in ["all-padfree", "completion-padfree", "all-padding"]:
    rows = [json.loads(l) for l in open(f"{work}/tiller-{name}/metrics.jsonl")]
    rows = [r for r in rows if "loss" in r]
    tok = sec = 0.0
    for prev, cur in zip(rows, rows[1:]):  # step 1 is warm-up
        n = cur["num_tokens"] - prev["num_tokens"]
        tok += n
        sec += n / cur["train_tokens_per_second"]
    tps = tok / sec
    print(f"tiller  {tps:8.1f} tok/s  roofline {100*6*params*tps/(roof*1e9):.0f}%  "
          f"{tps/trl['trl_tokens_per_second']:.2f}x TRL, {tps/trl32['trl_tokens_per_second']:.2f}x TRL f32  ({name})")
PY
