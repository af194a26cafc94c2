#!/usr/bin/env bash
# GRPO step speed, tiller next to TRL's GRPOTrainer in one run: same model, prompts, rule
# reward (`length`: 1 within TOL words of TARGET words), group size G, completion length,
# prompts per step, learning rate and beta = 0, on CPU in f32. Reports rollout
# (generation) tokens/s and whole-step seconds; JSON on the last line.
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
prompts=${PROMPTS:-data/prompts/train.jsonl}
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
echo "== TRL GRPOTrainer ($per_step prompts x G=$g, max_completion_length $max_new, $steps steps, f32)"
trl_json=$(.venv-bench/bin/python scripts/bench_grpo_trl.py "$model" "$prompts" "$steps" "$per_step" "$g" "$max_new" "$target" "$tol" "$work/trl" | tail -n 1)
echo "$trl_json"

echo "== tiller grpo"
cat > "$work/tiller.toml" <<TOML
model = "$model"
out = "$work/tiller"
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
TILLER_LOG=warn "$tiller" grpo --config "$work/tiller.toml" > /dev/null

.venv-bench/bin/python - "$work" "$trl_json" <<'PY'
import json, sys
work, trl = sys.argv[1], json.loads(sys.argv[2])
rows = [json.loads(l) for l in open(f"{work}/tiller/metrics.jsonl")]
timed = rows[1:] if len(rows) > 1 else rows  # step 1 is warm-up
gen_s = sum(r["time/generation_s"] for r in timed)
gen_tok = sum(r["rollout/tokens_per_second"] * r["time/generation_s"] for r in timed)
tiller = {
    "tiller_rollout_tokens_per_second": gen_tok / max(gen_s, 1e-9),
    "tiller_step_seconds": sum(r["time/step_s"] for r in timed) / len(timed),
    "tiller_generation_seconds_per_step": gen_s / len(timed),
    "tiller_mean_length": sum(r["completions/mean_length"] for r in timed) / len(timed),
    "tiller_rewards": [r["reward"] for r in rows],
}
result = {**trl, **tiller}
result["rollout_speedup"] = tiller["tiller_rollout_tokens_per_second"] / trl["trl_rollout_tokens_per_second"]
result["step_speedup"] = trl["trl_step_seconds"] / tiller["tiller_step_seconds"]
print(f"TRL    rollout {trl['trl_rollout_tokens_per_second']:8.1f} tok/s   step {trl['trl_step_seconds']:7.2f}s"
      f"   (mean completion {trl['trl_mean_length']:.1f} tokens)")
print(f"tiller rollout {tiller['tiller_rollout_tokens_per_second']:8.1f} tok/s   step {tiller['tiller_step_seconds']:7.2f}s"
      f"   (mean completion {tiller['tiller_mean_length']:.1f} tokens)")
print(f"tiller/TRL: rollout {result['rollout_speedup']:.2f}x, step {result['step_speedup']:.2f}x")
print(json.dumps(result))
PY
