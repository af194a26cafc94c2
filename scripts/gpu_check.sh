#!/usr/bin/env bash
# The GPU check: one script (≤ 10 minutes) for a CUDA machine that has torch 2.11.0 but no
# cargo and no network, running tiller binaries built elsewhere and carried over. Every
# model is random-weight with a fixed seed, built here from a config (no checkpoints to
# carry). It measures and prints:
#   1. logprob parity of CUDA f32 and bf16 against CPU f32 (a model of the default
#      model's shape: SmolLM2-135M's config);
#   2. SFT, DPO and GRPO steps: tokens/s and peak GPU memory;
#   3. MFU of a bf16 SFT step on a 1B-parameter Llama shape: 6·N·tokens/s ÷ the GPU's
#      dense bf16 peak (named; TILLER_PEAK_TFLOPS overrides);
#   4. generation tokens/s at batch 1, 16 and 64;
#   5. with more than one GPU: NCCL data-parallel SFT and its scaling efficiency.
# --cpu runs the same steps on CPU with tiny shapes (< 2 minutes; scripts/test.sh runs it
# so this script cannot rot): parity is CPU bf16 against CPU f32, data parallel is Gloo.
#
#   scripts/gpu_check.sh --bundle DIR        # on the build machine: carry DIR (≤ 64 MiB)
#   DIR/gpu_check.sh [--bin DIR]             # on the GPU machine (bin defaults to the script's dir)
#   scripts/gpu_check.sh --cpu --bin target/debug
#
# Environment: TILLER_PYTHON (a Python with torch 2.11.0; default /opt/torch/.venv/bin/python,
# then .venv/bin/python, then python3), TOKENIZER (a directory with tokenizer.json and
# tokenizer_config.json; default: the bundle's, then models/smollm2-135m-instruct), WORK
# (scratch directory; default a temporary one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=gpu
bin=""
bundle=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=cpu ;;
    --bin) bin=$2; shift ;;
    --bundle) bundle=$2; shift ;;
    *) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# --bundle: what the GPU machine needs, nothing more.
if [ -n "$bundle" ]; then
  root=$(cd "$here/.." && pwd)
  mkdir -p "$bundle/tokenizer"
  cp "$root/target/release/tiller" "$root/target/release/examples/random_model" "$here/gpu_check.sh" "$bundle/"
  cp "$root/models/smollm2-135m-instruct/"{tokenizer.json,tokenizer_config.json} "$bundle/tokenizer/"
  size=$(du -sm "$bundle" | cut -f1)
  echo "bundle $bundle: ${size} MiB"
  [ "$size" -le 64 ] || { echo "gpu_check.sh: the bundle exceeds 64 MiB" >&2; exit 1; }
  exit 0
fi

bin=$(cd "${bin:-$here}" && pwd)
tiller=$bin/tiller
random_model=$bin/random_model
[ -x "$random_model" ] || random_model=$bin/examples/random_model
for b in "$tiller" "$random_model"; do
  [ -x "$b" ] || { echo "gpu_check.sh: $b not found (--bin DIR holds tiller and random_model)" >&2; exit 1; }
done
python=${TILLER_PYTHON:-}
for p in /opt/torch/.venv/bin/python "$here/../.venv/bin/python" python3; do
  [ -n "$python" ] && break
  command -v "$p" >/dev/null 2>&1 && python=$p
done
# The binaries' rpath names the build machine's libtorch; point them at this one's.
torch_lib=$("$python" -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("torch").origin).parent / "lib")')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
export TILLER_LOG=${TILLER_LOG:-warn}
started=$(date +%s)
say() { printf '\n== %s\n' "$*"; }

if [ "$mode" = gpu ]; then
  command -v nvidia-smi >/dev/null || { echo "gpu_check.sh: no nvidia-smi; use --cpu" >&2; exit 1; }
  gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
  device=cuda
  tokenizer=${TOKENIZER:-}
  [ -n "$tokenizer" ] || { [ -d "$here/tokenizer" ] && tokenizer=$here/tokenizer; } || true
  [ -n "$tokenizer" ] || tokenizer=$here/../models/smollm2-135m-instruct
  tok_arg=(--tokenizer "$tokenizer")
  # SmolLM2-135M-Instruct's shape, and a 1B Llama shape with the same vocabulary.
  small='{"model_type":"llama","vocab_size":49152,"hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"rms_norm_eps":1e-5,"rope_theta":100000.0,"max_position_embeddings":8192,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,"pad_token_id":2}'
  big='{"model_type":"llama","vocab_size":49152,"hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,"num_attention_heads":32,"num_key_value_heads":8,"rms_norm_eps":1e-5,"rope_theta":500000.0,"max_position_embeddings":8192,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,"pad_token_id":2}'
  seq=512; batch=8; steps=8; gen_batches=1,16,64; gen_new=64; rows=256
  parity_legs="cuda:f32 cuda:bf16"
else
  gpus=2
  gpu_name="CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  device=cpu
  tok_arg=()
  small='{"model_type":"llama","vocab_size":259,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-5,"rope_theta":10000.0,"max_position_embeddings":4096,"tie_word_embeddings":true,"bos_token_id":256,"eos_token_id":257,"pad_token_id":258}'
  big=$small
  seq=512; batch=4; steps=4; gen_batches=1,4; gen_new=8; rows=32
  parity_legs="cpu:bf16"
fi
echo "gpu_check ($mode): $gpu_name, work in $work"

say "random models (fixed seeds)"
echo "$small" > "$work/small.json"
echo "$big" > "$work/big.json"
"$random_model" --config "$work/small.json" --seed 0 --out "$work/small" "${tok_arg[@]}"
big_params=$("$random_model" --config "$work/big.json" --seed 1 --dtype bf16 --out "$work/big" "${tok_arg[@]}" | awk '/^parameters/ {print $2}')
echo "1B shape: $big_params parameters"

# Synthetic data: chat rows, preference pairs and prompts of assorted lengths.
"$python" - "$work" "$rows" <<'PY'
import json, sys, random
work, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
words = "the a river stone light quiet number seven blue garden answer question simple".split()
def text(k): return " ".join(rng.choice(words) for _ in range(k))
with open(f"{work}/sft.jsonl", "w") as f, open(f"{work}/pairs.jsonl", "w") as g, \
     open(f"{work}/prompts.jsonl", "w") as h, open(f"{work}/score.jsonl", "w") as s:
    for i in range(n):
        p = text(rng.randint(4, 20))
        f.write(json.dumps({"messages": [{"role": "user", "content": p},
                                         {"role": "assistant", "content": text(rng.randint(10, 60))}]}) + "\n")
        g.write(json.dumps({"prompt": p, "chosen": text(rng.randint(5, 30)), "rejected": text(rng.randint(5, 30))}) + "\n")
        h.write(json.dumps({"prompt": p}) + "\n")
        if i < 16:
            s.write(json.dumps({"text": text(rng.randint(20, 120))}) + "\n")
PY

# Runs a command and prints its peak memory: GPU memory used (nvidia-smi, sampled every
# 100 ms, allocator cache included) on a GPU, the process tree's max RSS on CPU.
measure() {
  local log=$1; shift
  if [ "$mode" = gpu ]; then
    ( peak=0; while sleep 0.1; do
        m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | sort -n | tail -n 1)
        [ "$m" -gt "$peak" ] && peak=$m && echo "$peak" > "$log.peak"
      done ) & local sampler=$!
    "$@" > "$log" 2>&1 || { kill "$sampler"; cat "$log" >&2; return 1; }
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    echo "peak GPU memory $(cat "$log.peak" 2>/dev/null || echo 0) MiB"
  else
    "$python" - "$log" "$@" <<'PY'
import resource, subprocess, sys
log = open(sys.argv[1], "w")
rc = subprocess.call(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
if rc:
    sys.stderr.write(open(sys.argv[1]).read()); sys.exit(rc)
print(f"peak RSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB")
PY
  fi
}
# The mean of a metrics.jsonl key over logged steps after the first (warm-up).
metric() {
  "$python" - "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if sys.argv[2] in l]
vals = [r[sys.argv[2]] for r in rows if sys.argv[2] in r][1:] or [r[sys.argv[2]] for r in rows if sys.argv[2] in r]
print(f"{sum(vals) / max(len(vals), 1):.1f}")
PY
}

say "1. logprob parity against CPU f32 ($((seq)) tokens max, 16 texts)"
"$tiller" score --model "$work/small" --device cpu --dtype f32 --input "$work/score.jsonl" --output "$work/score-cpu.jsonl"
for leg in $parity_legs; do
  dev=${leg%%:*}; dt=${leg##*:}
  "$tiller" score --model "$work/small" --device "$dev" --dtype "$dt" --input "$work/score.jsonl" --output "$work/score-$dev-$dt.jsonl"
  "$python" - "$work/score-cpu.jsonl" "$work/score-$dev-$dt.jsonl" "$dev $dt" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
per_token = [abs(x["logprob"] - y["logprob"]) / x["tokens"] for x, y in zip(a, b)]
rel = max(abs(x["logprob"] - y["logprob"]) / abs(x["logprob"]) for x, y in zip(a, b))
print(f"{sys.argv[3]}: max |Δ logprob| per token {max(per_token):.2e}, max relative Δ of a text's logprob {rel:.2e}")
PY
done

sft_config() { # name model dtype batch steps device
  cat > "$work/$1.toml" <<TOML
model = "$2"
out = "$work/$1"
device = "$6"
dtype = "$3"
[data]
train = "$work/sft.jsonl"
max_seq_len = $seq
collation = "padding_free"
[train]
batch_size = $4
max_steps = $5
log_every = 1
TOML
}

say "2. training steps on the default shape ($device, bf16 on GPU)"
dtype=bf16; [ "$mode" = cpu ] && dtype=f32
sft_config sft "$work/small" "$dtype" "$batch" "$steps" "$device"
m=$(measure "$work/sft.log" "$tiller" sft --config "$work/sft.toml")
echo "sft: $m, $(metric "$work/sft/metrics.jsonl" train_tokens_per_second) tokens/s"
cat > "$work/dpo.toml" <<TOML
model = "$work/small"
out = "$work/dpo"
device = "$device"
dtype = "$dtype"
[data]
train = "$work/pairs.jsonl"
max_seq_len = $seq
[loss]
kind = "sigmoid"
beta = 0.1
[train]
batch_size = $batch
max_steps = $steps
log_every = 1
TOML
m=$(measure "$work/dpo.log" "$tiller" dpo --config "$work/dpo.toml")
echo "dpo: $m, $(metric "$work/dpo/metrics.jsonl" train_tokens_per_second) tokens/s"
cat > "$work/grpo.toml" <<TOML
model = "$work/small"
out = "$work/grpo"
device = "$device"
dtype = "$dtype"
[rollout]
prompts = "$work/prompts.jsonl"
max_new_tokens = $gen_new
[[reward.rules]]
kind = "length"
target_words = 15
tolerance = 5
[grpo]
num_generations = 4
[train]
batch_size = $batch
max_steps = $steps
log_every = 1
TOML
m=$(measure "$work/grpo.log" "$tiller" grpo --config "$work/grpo.toml")
echo "grpo: $m, rollout $(metric "$work/grpo/metrics.jsonl" rollout/tokens_per_second) tokens/s, $(metric "$work/grpo/metrics.jsonl" time/step_s) s/step"

say "3. MFU of a bf16 SFT step, 1B Llama shape ($big_params parameters)"
if [ "$mode" = gpu ]; then
  sft_config mfu "$work/big" bf16 4 6 cuda
  m=$(measure "$work/mfu.log" "$tiller" sft --config "$work/mfu.toml")
  echo "mfu run: $m"
  tps=$(metric "$work/mfu/metrics.jsonl" train_tokens_per_second)
  # Dense bf16 tensor-core peaks (no sparsity) from the vendors' data sheets.
  case "$gpu_name" in
    *H200*|*H100*SXM*|*H100\ 80GB\ HBM3*) peak=989 ;;
    *H100*PCIe*|*H100*) peak=756 ;;
    *B200*) peak=2250 ;;
    *A100*) peak=312 ;;
    *L40S*) peak=362 ;;
    *A10G*) peak=70 ;;
    *L4*) peak=121 ;;
    *4090*) peak=165 ;;
    *) peak=0 ;;
  esac
  peak=${TILLER_PEAK_TFLOPS:-$peak}
  if [ "$peak" = 0 ]; then
    echo "$tps tokens/s; MFU unknown: no bf16 peak on file for $gpu_name (set TILLER_PEAK_TFLOPS)"
  else
    "$python" -c "n, t, p = $big_params, $tps, $peak; print(f'{t} tokens/s × 6 × {n/1e9:.2f}B params = {6*n*t/1e12:.1f} TFLOP/s = MFU {6*n*t/(p*1e12):.1%} of {p} TFLOP/s (dense bf16 peak of $gpu_name)')"
  fi
else
  echo "skipped on CPU (no bf16 tensor-core peak to compare with)"
fi

say "4. generation tokens/s (batches $gen_batches, $gen_new new tokens)"
gen_dtype=bf16; [ "$mode" = cpu ] && gen_dtype=f32
"$tiller" bench generation --model "$work/small" --device "$device" --dtype "$gen_dtype" \
  --batch-sizes "$gen_batches" --max-new-tokens "$gen_new" --out "$work/generation.json" > "$work/generation.log"
"$python" - "$work/generation.json" <<'PY'
import json, sys
for f in json.load(open(sys.argv[1])):
    print(f"batch {f['batch_size']}: {f.get('generate_tokens_per_s', f.get('forward_tokens_per_s')):.1f} new tokens/s")
PY

say "5. data-parallel SFT"
if [ "$gpus" -gt 1 ]; then
  n=$gpus
  sft_config dp1 "$work/small" "$dtype" "$batch" "$steps" "$device"
  sft_config dpn "$work/small" "$dtype" "$batch" "$steps" "$device"
  threads=1; [ "$mode" = gpu ] && threads=4
  OMP_NUM_THREADS=$threads "$tiller" sft --config "$work/dp1.toml" > "$work/dp1.log" 2>&1
  OMP_NUM_THREADS=$threads "$tiller" sft --config "$work/dpn.toml" --nproc-per-node "$n" > "$work/dpn.log" 2>&1 \
    || { cat "$work/dpn.log" >&2; exit 1; }
  one=$(metric "$work/dp1/metrics.jsonl" train_tokens_per_second)
  many=$(metric "$work/dpn/metrics.jsonl" train_tokens_per_second)
  backend=NCCL; [ "$mode" = cpu ] && backend=Gloo
  "$python" -c "print(f'{$n} ranks ($backend): {$many} tokens/s vs 1 rank {$one} tokens/s: scaling efficiency {$many / ($n * $one):.1%}')"
else
  echo "skipped: one GPU"
fi
echo
echo "gpu_check ($mode) done in $(( $(date +%s) - started )) s"
