#!/usr/bin/env bash
# GRPO rollouts, tiller's decode engine next to TRL's GRPOTrainer generation in one run:
# same model, prompts file, PROMPTS_PER_STEP prompts x G completions a step, up to MAX_NEW
# tokens, temperature 1, seed 42, stopping at EOS, on CPU. tiller: `tiller bench rollout`
# (the rollout code `tiller grpo` runs, without the update) in f32 and bf16. TRL: its own
# trainer (scripts/bench_grpo_trl.py, GRPOTrainer.train with vLLM off), timing each call
# of `model.generate` on the prompts repeated G times, at its defaults (f32 weights, bf16
# autocast) and with bf16 = False. Step 1 of every side is warm-up and not timed. Prints
# rollout tokens/s of each and the ratios; JSON lines at the end.
#
#   scripts/bench_rollout.sh     # STEPS=2 PROMPTS_PER_STEP=4 G=8 MAX_NEW=64, PROFILE=release
#
# TRL comes from PyPI into .venv-bench (scripts/bench/common.sh). Both sides sample, so
# completion lengths differ between them: compare tokens/s beside the mean lengths.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${MODEL:-models/smollm2-135m-instruct}
prompts=${PROMPTS:-datasets/prompts/train.jsonl}
steps=${STEPS:-2}
per_step=${PROMPTS_PER_STEP:-4}
g=${G:-8}
max_new=${MAX_NEW:-64}
work=${WORK:-runs/bench-rollout}
torch_python=${TILLER_PYTHON:-$root/.venv/bin/python}
mkdir -p "$work"
source scripts/bench/common.sh

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
results=()
for dtype in f32 bf16; do
  echo "== tiller bench rollout ($dtype, $per_step prompts x G=$g, max $max_new tokens, $steps timed steps)"
  "$tiller" bench rollout --model "$model" --dtype "$dtype" --prompts "$prompts" \
    --prompts-per-step "$per_step" --num-generations "$g" --max-new-tokens "$max_new" \
    --steps "$steps" > "$work/tiller-$dtype.log"
  cat "$work/tiller-$dtype.log"
  results+=("$(tail -n 1 "$work/tiller-$dtype.log")")
done
# The TRL script's step 1 is its warm-up, so it runs one step more than it times.
trl_args=("$model" "$prompts" "$((steps + 1))" "$per_step" "$g" "$max_new" 20 5)
echo "== TRL GRPOTrainer generation at its defaults (bf16 autocast)"
results+=("$(.venv-bench/bin/python scripts/bench_grpo_trl.py "${trl_args[@]}" "$work/trl" | tail -n 1)")
echo "${results[-1]}"
echo "== TRL GRPOTrainer generation, bf16 = False"
results+=("$(.venv-bench/bin/python scripts/bench_grpo_trl.py "${trl_args[@]}" "$work/trl32" f32 | tail -n 1)")
echo "${results[-1]}"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== results"
printf '%s\n' "${results[@]}" | tee "$work/results.jsonl"
.venv-bench/bin/python - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tiller = {r["dtype"]: r for r in rows if "tiller_rollout_tokens_per_second" in r}
trl = {("f32" if not r["trl_bf16"] else "defaults"): r for r in rows if "trl_rollout_tokens_per_second" in r}
print("| | rollout tok/s | generation s/step | mean completion |")
print("|---|---:|---:|---:|")
for name, r in trl.items():
    print(f"| TRL GRPOTrainer, {name} | {r['trl_rollout_tokens_per_second']:.1f} | {r['trl_generation_seconds_per_step']:.2f} | {r['trl_mean_length']:.1f} |")
for name, r in tiller.items():
    print(f"| tiller, {name} | {r['tiller_rollout_tokens_per_second']:.1f} | {r['tiller_generation_seconds_per_step']:.2f} | {r['tiller_mean_length']:.1f} |")
for t, tr in tiller.items():
    for n, r in trl.items():
        ratio = tr["tiller_rollout_tokens_per_second"] / r["trl_rollout_tokens_per_second"]
        print(f"tiller {t} / TRL {n}: {ratio:.2f}x")
PY
