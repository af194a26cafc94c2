#!/usr/bin/env bash
# Reward-model quality, tiller beside TRL's RewardTrainer trained the same way (issue 18):
# the default model on UltraFeedback's binarized pairs (../shared/datasets/
# ultrafeedback-binarized-subset: 1,000 train, 200 eval, as conversations so both apply
# the chat template), with the same learning rate, linear schedule without warm-up, batch,
# epochs, max length, seed, precision (f32), weight decay (0) and gradient clipping (1.0).
# TRL drops a pair longer than max_length and tiller truncates it, so training pairs that
# do not fit are left out of both sides' data first. Both trained models are then scored by
# one script (scripts/bench/score_reward_pairs.py) on every held-out pair, whole:
# accuracy, Wilson interval, and the exact McNemar test on the pairs where only one of
# them is right. Each trainer's own evaluation (on the held-out pairs that fit) is printed
# beside, as a cross-check.
#
#   scripts/bench_reward_quality.sh                          # PROFILE=release, one epoch
#   LIMIT=16 PROFILE=dev scripts/bench_reward_quality.sh     # a smoke test: the first 16 rows of each split
#   PARALLEL=1 ...   # train both at once, one thread each (2 cores: the same wall time, or less)
#
# Settings: LR (1e-4), EPOCHS (1), BATCH (8), MAX_LEN (512), SEED (42), DATA, MODEL, WORK.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${MODEL:-models/smollm2-135m-instruct}
data=${DATA:-$root/../shared/datasets/ultrafeedback-binarized-subset}
lr=${LR:-1e-4}  # RewardConfig's default
epochs=${EPOCHS:-1}
batch=${BATCH:-8}
max_len=${MAX_LEN:-512}
seed=${SEED:-42}
limit=${LIMIT:-0}
work=${WORK:-runs/bench-reward-quality}
torch_python=${TILLER_PYTHON:-$root/.venv/bin/python}
for f in train_clean.jsonl eval_clean.jsonl; do
  [ -f "$data/$f" ] || { echo "error: $data/$f not found (set DATA to the UltraFeedback subset)" >&2; exit 1; }
done
rm -rf "$work"
mkdir -p "$work/data"
source scripts/bench/common.sh

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); commit $(git rev-parse --short HEAD)"
echo "== data: conversations, pairs of at most $max_len tokens (chat template applied)"
.venv-bench/bin/python - "$model" "$data" "$work/data" "$max_len" "$limit" <<'PY'
import json, sys
from transformers import AutoTokenizer
from trl.data_utils import _tokenize
model, src, dst, max_len, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
tokenizer = AutoTokenizer.from_pretrained(model)
# train.jsonl and eval_fit.jsonl: the pairs that fit (for training and the trainers' own
# evaluation); eval.jsonl: every held-out pair (for the one scorer).
for split, files in (("train", ["train"]), ("eval", ["eval_fit", "eval"])):
    kept = seen = 0
    outs = {name: open(f"{dst}/{name}.jsonl", "w") for name in files}
    with open(f"{src}/{split}_clean.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            seen += 1
            prompt = [{"role": "user", "content": row["prompt"]}]
            pair = {"prompt": prompt}
            for side in ("chosen", "rejected"):
                pair[side] = [{"role": "assistant", "content": row[side]}]
            fits = max(len(_tokenize(tokenizer, prompt + pair[s])["input_ids"]) for s in ("chosen", "rejected")) <= max_len
            for name, out in outs.items():
                if fits or name == "eval":
                    out.write(json.dumps(pair) + "\n")
            kept += fits
            if limit and seen == limit:
                break
    print(f"   {split}: {kept} of {seen} pairs fit")
PY

train_trl() {
  .venv-bench/bin/python scripts/bench_reward_quality_trl.py "$model" "$work/data/train.jsonl" "$work/data/eval_fit.jsonl" \
    "$work/trl" "$lr" "$epochs" "$batch" "$max_len" "$seed" > "$work/trl.json" 2> "$work/trl.log"
}
train_tiller() {
  cat > "$work/tiller.toml" <<TOML
model = "$model"
out = "$work/tiller"
seed = $seed
dtype = "f32"
[data]
train = "$work/data/train.jsonl"
eval = "$work/data/eval_fit.jsonl"
max_seq_len = $max_len
[train]
batch_size = $batch
epochs = $epochs
log_every = 10
[optim]
lr = $lr
weight_decay = 0.0
max_grad_norm = 1.0
[schedule]
kind = "linear"
warmup_steps = 0
TOML
  local start=$SECONDS
  "$tiller" reward train --config "$work/tiller.toml" > "$work/tiller.log" 2>&1
  echo $((SECONDS - start)) > "$work/tiller.seconds"
}

if [ -n "${PARALLEL:-}" ]; then
  echo "== training TRL RewardTrainer and tiller reward train at once, one thread each (logs: $work/{trl,tiller}.log)"
  OMP_NUM_THREADS=1 train_trl & trl_pid=$!
  OMP_NUM_THREADS=1 train_tiller & tiller_pid=$!
  wait $trl_pid; wait $tiller_pid
else
  echo "== training TRL RewardTrainer (log: $work/trl.log)"
  train_trl
  echo "== training tiller reward train (log: $work/tiller.log)"
  train_tiller
fi
echo "   TRL: $(cat "$work/trl.json")"
echo "   tiller: $(cat "$work/tiller.seconds") s; its own eval: $(grep -o '"eval_accuracy":[^,}]*' "$work/tiller/metrics.jsonl" | tail -n 1)"

echo "== both models scored by one script on every held-out pair"
.venv-bench/bin/python scripts/bench/score_reward_pairs.py "$work/data/eval.jsonl" "$work/scores.json" \
  "TRL RewardTrainer=$work/trl/model" "tiller reward train=$work/tiller" | tee "$work/table.md"
