#!/usr/bin/env bash
# GRPO step speed, tiller next to TRL's GRPOTrainer in one run: same model, prompts, rule
# reward (`length`: 1 within TOL words of TARGET words), group size G, completion length,
# prompts per step, learning rate and beta = 0, on CPU. TRL runs at its defaults (f32
# weights, bf16 autocast) and once more with bf16 = False; tiller runs in f32 and in bf16
# (f32 master weights, the closest to TRL's autocast). Reports rollout (generation)
# tokens/s and whole-step seconds; JSON on the last line.
#
#   scripts/bench_grpo.sh     # STEPS=6 PROMPTS_PER_STEP=4 G=4 MAX_NEW=64, PROFILE=release
#
# TRL is installed from PyPI into .venv-bench (as scripts/bench_sft.sh does). Step 1 of
# each run is warm-up and not timed. Both sides sample, so completion lengths (and with
# them tokens per step) differ between runs; compare tokens/s, and step times only
# alongside the mean completion lengths printed next to them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${MODEL:-models/smollm2-135m-instruct}
prompts=${PROMPTS:-datasets/prompts/train.jsonl}
steps=${STEPS:-6}
per_step=${PROMPTS_PER_STEP:-4}
g=${G:-4}
max_new=${MAX_NEW:-64}
target=${TARGET:-20}
tol=${TOL:-5}
work=${WORK:-runs/bench-grpo}
torch_python=${TILLER_PYTHON:-$root/.venv/bin/python}
mkdir -p "$work"
source scripts/bench/common.sh

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
trl_args=("$model" "$prompts" "$steps" "$per_step" "$g" "$max_new" "$target" "$tol")
echo "== TRL GRPOTrainer at its defaults ($per_step prompts x G=$g, max_completion_length $max_new, $steps steps)"
trl_json=$(.venv-bench/bin/python scripts/bench_grpo_trl.py "${trl_args[@]}" "$work/trl" | tail -n 1)
echo "$trl_json"
echo "== TRL GRPOTrainer, bf16 = False (f32 throughout)"
trl32_json=$(.venv-bench/bin/python scripts/bench_grpo_trl.py "${trl_args[@]}" "$work/trl32" f32 | tail -n 1)
echo "$trl32_json"

for dtype in f32 bf16; do
  echo "== tiller grpo ($dtype)"
  rm -rf "$work/tiller-$dtype"
  cat > "$work/tiller-$dtype.toml" <<TOML
model = "$model"
out = "$work/tiller-$dtype"
dtype = "$dtype"
seed = 42
[rollout]
prompts = "$prompts"
max_new_tokens = $max_new
temperature = 1.0
samples_every = 0
[[reward.rules]]
kind = "length"
target_words = $target
tolerance = $tol
[grpo]
num_generations = $g
beta = 0.0
[train]
batch_size = $per_step
max_steps = $steps
log_every = 1
[optim]
lr = 1e-6
TOML
  TILLER_LOG=warn "$tiller" grpo --config "$work/tiller-$dtype.toml" > /dev/null
done

.venv-bench/bin/python - "$work" "$trl_json" "$trl32_json" <<'PY'
import json, sys
work, trl, trl32 = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])

def tiller(dtype):
    rows = [json.loads(l) for l in open(f"{work}/tiller-{dtype}/metrics.jsonl")]
    timed = rows[1:] if len(rows) > 1 else rows  # step 1 is warm-up
    gen_s = sum(r["time/generation_s"] for r in timed)
    gen_tok = sum(r["rollout/tokens_per_second"] * r["time/generation_s"] for r in timed)
    return {
        "rollout_tokens_per_second": gen_tok / max(gen_s, 1e-9),
        "step_seconds": sum(r["time/step_s"] for r in timed) / len(timed),
        "generation_seconds_per_step": gen_s / len(timed),
        "mean_length": sum(r["completions/mean_length"] for r in timed) / len(timed),
        "rewards": [r["reward"] for r in rows],
    }

def peer(j):
    return {k[len("trl_"):]: v for k, v in j.items() if k.startswith("trl_")}

runs = {"trl": peer(trl), "trl_f32": peer(trl32), "tiller_f32": tiller("f32"), "tiller_bf16": tiller("bf16")}
labels = {"trl": "TRL (defaults: bf16 autocast)", "trl_f32": "TRL (bf16 = False)",
          "tiller_f32": "tiller (f32)", "tiller_bf16": "tiller (bf16, f32 master)"}
for key, r in runs.items():
    print(f"{labels[key]:32} rollout {r['rollout_tokens_per_second']:7.1f} tok/s   step {r['step_seconds']:6.2f}s"
          f"   generation {r['generation_seconds_per_step']:5.2f}s/step   mean completion {r['mean_length']:.1f} tokens")
ratios = {}
for mine, theirs in [("tiller_bf16", "trl"), ("tiller_f32", "trl"), ("tiller_f32", "trl_f32"), ("tiller_bf16", "trl_f32")]:
    a, b = runs[mine], runs[theirs]
    ratios[f"{mine}/{theirs}"] = {
        "rollout": a["rollout_tokens_per_second"] / b["rollout_tokens_per_second"],
        "step": b["step_seconds"] / a["step_seconds"],
    }
    print(f"{mine} vs {theirs}: rollout {ratios[f'{mine}/{theirs}']['rollout']:.2f}x, step {ratios[f'{mine}/{theirs}']['step']:.2f}x")
print(json.dumps({"runs": runs, "ratios": ratios}))
PY
