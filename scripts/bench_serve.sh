#!/usr/bin/env bash
# Serving speed, `tiller serve` next to `transformers serve` (transformers' own
# OpenAI-compatible server) in one run: same model, same prompts, same client script
# (scripts/bench_serve_client.py: streaming chat, greedy, MAX_TOKENS per answer) at 1, 8
# and 32 concurrent clients. Reports aggregate output tokens/s, time to first token and
# inter-token latency p50/p99, and each server's peak RSS (VmHWM); JSON lines at the end.
#
#   scripts/bench_serve.sh     # CONCURRENCY="1 8 32" REQUESTS=2 MAX_TOKENS=64, PROFILE=release
#
# TILLER_SERVE_ARGS (e.g. "--dtype bf16") and HF_SERVE_ARGS add to / replace each
# server's flags.
#
# transformers and its serving extras come from PyPI into .venv-bench (as the other
# benchmarks do); the same venv's python runs the client against both servers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${MODEL:-models/smollm2-135m-instruct}
prompts=${PROMPTS:-datasets/prompts/train.jsonl}
concurrency=${CONCURRENCY:-1 8 32}
requests=${REQUESTS:-2}
max_tokens=${MAX_TOKENS:-64}
work=${WORK:-runs/bench-serve}
torch_python=${TILLER_PYTHON:-$root/.venv/bin/python}
mkdir -p "$work"
source scripts/bench/common.sh
.venv-bench/bin/python -c 'import fastapi, uvicorn, openai' 2>/dev/null \
  || .venv-bench/bin/pip install -q "transformers[serving]" openai
py=.venv-bench/bin/python

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
peak_rss_mb() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$1/status"; }
wait_ready() { # URL PID
  for _ in $(seq 1 600); do
    if curl -sf "$1/v1/models" >/dev/null 2>&1; then return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "server $2 died" >&2; return 1; }
    sleep 0.5
  done
  echo "server at $1 never came up" >&2; return 1
}
results=()
run_clients() { # NAME URL MODEL_ID PID
  for c in $concurrency; do
    json=$($py scripts/bench_serve_client.py "$2" "$3" "$prompts" "$c" "$requests" "$max_tokens")
    json=$(echo "$json" | $py -c "import json,sys; d=json.load(sys.stdin); d['server']='$1'; d['peak_rss_mb']=$(peak_rss_mb "$4"); print(json.dumps(d))")
    echo "$json"
    results+=("$json")
  done
}

port=$((20000 + RANDOM % 20000))
read -r -a tiller_args <<< "${TILLER_SERVE_ARGS:-}"
echo "== tiller serve ($tiller, --max-batch 32 ${tiller_args[*]})"
"$tiller" serve --model "bench=$model" --bind "127.0.0.1:$port" --max-batch 32 "${tiller_args[@]}" \
  > "$work/tiller.log" 2>&1 &
tpid=$!
trap 'kill $tpid 2>/dev/null || true' EXIT
wait_ready "http://127.0.0.1:$port" "$tpid"
run_clients tiller "http://127.0.0.1:$port" bench "$tpid"
kill -TERM "$tpid"; wait "$tpid" || true

port=$((port + 1))
echo "== transformers serve ($(.venv-bench/bin/python -c 'import transformers; print(transformers.__version__)'), ${HF_SERVE_ARGS:---device cpu --dtype float32 --continuous-batching})"
abs_model=$(cd "$model" && pwd)
# Its flags changed between transformers releases; HF_SERVE_ARGS overrides them.
read -r -a hf_args <<< "${HF_SERVE_ARGS:---device cpu --dtype float32 --continuous-batching}"
.venv-bench/bin/transformers serve "$abs_model" --host 127.0.0.1 --port "$port" "${hf_args[@]}" \
  > "$work/transformers.log" 2>&1 &
hpid=$!
trap 'kill $hpid 2>/dev/null || true' EXIT
wait_ready "http://127.0.0.1:$port" "$hpid"
run_clients transformers "http://127.0.0.1:$port" "$abs_model" "$hpid"
kill "$hpid" 2>/dev/null || true

echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== results"
printf '%s\n' "${results[@]}"
