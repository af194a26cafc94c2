#!/usr/bin/env bash
# Reward-model training throughput and memory, tiller next to TRL's RewardTrainer in one
# run: the default model, the project's pairs, at TRL's defaults (batch 8 pairs, max
# length 1024), on CPU. TRL runs at its defaults (bf16 autocast, gradient checkpointing)
# and once more with bf16 = False; tiller runs in f32 and in bf16 (f32 master weights).
# Reports real tokens/s of the chosen and rejected sequences (both count `num_tokens` from
# the attention mask) after the warm-up step, and each process's peak RSS. The last line
# is JSON.
#
#   scripts/bench_reward.sh                    # STEPS=6, PROFILE=release
#   STEPS=2 PROFILE=dev scripts/bench_reward.sh  # a smoke test
#
# TRL is installed from PyPI into .venv-bench (scripts/bench/common.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${MODEL:-models/smollm2-135m-instruct}
data=${DATA:-datasets/preferences/train.jsonl}
steps=${STEPS:-6}
batch=${BATCH:-8}
max_len=${MAX_LEN:-1024}
work=${WORK:-runs/bench-reward}
torch_python=${TILLER_PYTHON:-$root/.venv/bin/python}
rm -rf "$work"
mkdir -p "$work"
source scripts/bench/common.sh

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== TRL RewardTrainer (defaults; batch $batch pairs, max_length $max_len, $steps steps)"
trl_json=$(.venv-bench/bin/python scripts/bench_reward_trl.py "$model" "$data" "$steps" "$batch" "$max_len" "$work/trl" | tail -n 1)
echo "$trl_json"
echo "== TRL RewardTrainer (defaults but bf16 = False: f32 like tiller)"
trl32_json=$(.venv-bench/bin/python scripts/bench_reward_trl.py "$model" "$data" "$steps" "$batch" "$max_len" "$work/trl32" f32 | tail -n 1)
echo "$trl32_json"

# tiller twice: f32, and bf16 compute with f32 master weights (the closest to TRL's
# default bf16 autocast, which keeps f32 weights and runs the products in bf16).
for dtype in f32 bf16; do
  echo "== tiller reward train ($dtype)"
  cat > "$work/tiller-$dtype.toml" <<TOML
model = "$model"
out = "$work/tiller-$dtype"
dtype = "$dtype"
[data]
train = "$data"
max_seq_len = $max_len
[train]
batch_size = $batch
max_steps = $steps
log_every = 1
[optim]
lr = 1e-4
TOML
  "$torch_python" - "$tiller" "$work" "$dtype" <<'PY'
import os, resource, subprocess, sys
tiller, work, dtype = sys.argv[1:4]
subprocess.run([tiller, "reward", "train", "--config", f"{work}/tiller-{dtype}.toml"], stdout=subprocess.DEVNULL,
               env={**os.environ, "TILLER_LOG": "warn"}, check=True)
with open(f"{work}/tiller-{dtype}.rss", "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
PY
done

"$torch_python" - "$work" "$trl_json" "$trl32_json" <<'PY'
import json, sys
work, trl, trl32 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])

def tokens_per_second(dtype):
    rows = [json.loads(l) for l in open(f"{work}/tiller-{dtype}/metrics.jsonl")]
    rows = [r for r in rows if "train_tokens_per_second" in r]
    tok = sec = 0.0
    for prev, cur in zip(rows, rows[1:]):  # step 1 is warm-up
        n = cur["num_tokens"] - prev["num_tokens"]
        tok += n
        sec += n / cur["train_tokens_per_second"]
    return tok / sec

out = {
    "trl_tokens_per_second": trl["trl_tokens_per_second"],
    "trl_peak_rss_mib": trl["trl_peak_rss_mib"],
    "trl_f32_tokens_per_second": trl32["trl_tokens_per_second"],
    "trl_f32_peak_rss_mib": trl32["trl_peak_rss_mib"],
}
print(f"TRL     {out['trl_tokens_per_second']:8.1f} tok/s  peak RSS {out['trl_peak_rss_mib']:.0f} MiB  "
      f"(bf16 {trl['trl_bf16']}, grad ckpt {trl['trl_gradient_checkpointing']})")
print(f"TRL f32 {out['trl_f32_tokens_per_second']:8.1f} tok/s  peak RSS {out['trl_f32_peak_rss_mib']:.0f} MiB")
for dtype in ("f32", "bf16"):
    tps = tokens_per_second(dtype)
    rss = float(open(f"{work}/tiller-{dtype}.rss").read())
    out[f"tiller_{dtype}_tokens_per_second"] = tps
    out[f"tiller_{dtype}_peak_rss_mib"] = rss
    out[f"speedup_{dtype}"] = tps / trl["trl_tokens_per_second"]
    out[f"speedup_{dtype}_vs_trl_f32"] = tps / trl32["trl_tokens_per_second"]
    print(f"tiller {dtype:4s} {tps:8.1f} tok/s  peak RSS {rss:.0f} MiB: {out[f'speedup_{dtype}']:.2f}x TRL, "
          f"{out[f'speedup_{dtype}_vs_trl_f32']:.2f}x TRL f32")
print(json.dumps(out))
PY
