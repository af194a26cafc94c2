#!/usr/bin/env bash
# DPO training throughput and memory, tiller next to TRL's DPOTrainer in one run: the
# default model, the project's pairs, batch 4 pairs, max length 256, β = 0.1, f32 on CPU.
# Two epochs each: the first pays for the reference (tiller: filling its log-prob cache,
# timed as part of the epoch; TRL: a reference forward every step), the second shows
# tiller with its cache warm (TRL's precompute_ref_log_probs stays off, its default).
# Reports tokens/s per epoch (real tokens of the chosen and rejected sequences, as both
# count `num_tokens`) and each process's peak RSS. The last line is JSON.
#
#   scripts/bench_dpo.sh             # every pair (63 steps an epoch), PROFILE=release
#   STEPS=2 PROFILE=dev scripts/bench_dpo.sh   # 2 steps an epoch (2 × BATCH pairs): a smoke test
#
# TRL is installed from PyPI into .venv-bench (scripts/bench/common.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${MODEL:-models/smollm2-135m-instruct}
data=${DATA:-datasets/preferences/train.jsonl}
batch=${BATCH:-4}
max_len=${MAX_LEN:-256}
beta=${BETA:-0.1}
work=${WORK:-runs/bench-dpo}
torch_python=${TILLER_PYTHON:-$root/.venv/bin/python}
rm -rf "$work"
mkdir -p "$work"
source scripts/bench/common.sh

# The pairs of one epoch: all of them, or the first STEPS × BATCH.
pairs="$work/pairs.jsonl"
if [ -n "${STEPS:-}" ]; then
  head -n $((STEPS * batch)) "$data" > "$pairs"
else
  cp "$data" "$pairs"
fi

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== TRL DPOTrainer (defaults but bf16 = False; batch $batch pairs, max_length $max_len, beta $beta, 2 epochs of $(wc -l < "$pairs") pairs)"
trl_json=$(.venv-bench/bin/python scripts/bench_dpo_trl.py "$model" "$pairs" "$batch" "$max_len" "$beta" "$work/trl" | tail -n 1)
echo "$trl_json"

echo "== tiller dpo (padding-free, reference log-probs cached)"
cat > "$work/tiller.toml" <<TOML
model = "$model"
out = "$work/tiller"
[data]
train = "$pairs"
max_seq_len = $max_len
[loss]
kind = "sigmoid"
beta = $beta
[reference]
cache = true
cache_dir = "$work/tiller-ref-cache"
[train]
batch_size = $batch
epochs = 2
log_every = 1
[optim]
lr = 1e-6
TOML
# The log line "cached reference log-probs of N rows in S s" times the cache fill.
"$torch_python" - "$tiller" "$work" <<'PY'
import os, resource, subprocess, sys
tiller, work = sys.argv[1:3]
with open(f"{work}/tiller.log", "w") as log:
    subprocess.run([tiller, "dpo", "--config", f"{work}/tiller.toml"], stderr=log, stdout=log,
                   env={**os.environ, "TILLER_LOG": "info"}, check=True)
with open(f"{work}/tiller.rss", "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))
PY

"$torch_python" - "$work" "$trl_json" <<'PY'
import json, re, sys
work, trl = sys.argv[1], json.loads(sys.argv[2])
rows = [json.loads(l) for l in open(f"{work}/tiller/metrics.jsonl")]
rows = [r for r in rows if "loss" in r and "train_tokens_per_second" in r]
log = open(f"{work}/tiller.log").read()
fill = sum(float(s) for s in re.findall(r"cached reference log-probs of \d+ rows in ([0-9.]+)s", log))
per_epoch = len(rows) // 2
def span(rs, start_tokens):
    tok = rs[-1]["num_tokens"] - start_tokens
    sec = 0.0
    prev = start_tokens
    for r in rs:
        n = r["num_tokens"] - prev
        sec += n / r["train_tokens_per_second"]
        prev = r["num_tokens"]
    return tok, sec
t1, s1 = span(rows[:per_epoch], 0)
t2, s2 = span(rows[per_epoch:], rows[per_epoch - 1]["num_tokens"])
s1 += fill
out = {
    "steps_per_epoch": per_epoch,
    "tiller_epoch1_tokens_per_second": t1 / s1,
    "tiller_epoch2_tokens_per_second": t2 / s2,
    "tiller_reference_cache_seconds": fill,
    "tiller_peak_rss_mib": float(open(f"{work}/tiller.rss").read()),
    "trl_epoch1_tokens_per_second": trl["epoch1_tokens_per_second"],
    "trl_epoch2_tokens_per_second": trl["epoch2_tokens_per_second"],
    "trl_peak_rss_mib": trl["peak_rss_mib"],
    "trl_tokens_per_epoch": trl["epoch1_tokens"],
    "tiller_tokens_per_epoch": t1,
}
out["speedup_epoch1"] = out["tiller_epoch1_tokens_per_second"] / out["trl_epoch1_tokens_per_second"]
out["speedup_epoch2"] = out["tiller_epoch2_tokens_per_second"] / out["trl_epoch2_tokens_per_second"]
print(f"epoch 1: tiller {out['tiller_epoch1_tokens_per_second']:.1f} tok/s (cache fill {fill:.1f}s included), "
      f"TRL {out['trl_epoch1_tokens_per_second']:.1f} tok/s: {out['speedup_epoch1']:.2f}x")
print(f"epoch 2: tiller {out['tiller_epoch2_tokens_per_second']:.1f} tok/s (cache warm), "
      f"TRL {out['trl_epoch2_tokens_per_second']:.1f} tok/s: {out['speedup_epoch2']:.2f}x")
print(f"peak RSS: tiller {out['tiller_peak_rss_mib']:.0f} MiB, TRL {out['trl_peak_rss_mib']:.0f} MiB")
print(json.dumps(out))
PY
