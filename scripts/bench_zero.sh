#!/usr/bin/env bash
# ZeRO-1 memory on CPU: SFT on the default model as one process, as two ranks, and as two
# ranks with `shard_optimizer = true`, a few steps each at the same global batch. Prints
# the optimizer state each rank reports at start and the peak RSS of the largest process
# (GNU time's "Maximum resident set size": for a launcher, its largest rank).
#
#   scripts/bench_zero.sh     # BIN=target/release/tiller STEPS=2 MAX_LEN=128 DTYPE=f32
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tiller=${BIN:-target/release/tiller}
model=${MODEL:-models/smollm2-135m-instruct}
data=${DATA:-data/sft/train.jsonl}
steps=${STEPS:-2}
max_len=${MAX_LEN:-128}
dtype=${DTYPE:-f32}
work=${WORK:-runs/bench-zero}
mkdir -p "$work"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
config() { # name per-rank-batch shard
  cat > "$work/$1.toml" <<TOML
model = "$model"
out = "$work/$1"
dtype = "$dtype"
[data]
train = "$data"
max_seq_len = $max_len
collation = "padding_free"
[train]
batch_size = $2
max_steps = $steps
log_every = 1
[optim]
shard_optimizer = $3
TOML
}
run() { # name threads [launcher args]
  local name=$1 threads=$2
  shift 2
  rm -rf "${work:?}/$name"
  OMP_NUM_THREADS=$threads TILLER_LOG=info /usr/bin/time -v "$tiller" sft \
    --config "$work/$name.toml" "$@" > "$work/$name.log" 2>&1
  local state rss
  state=$(grep -m1 -o 'optimizer state: .*' "$work/$name.log")
  rss=$(grep 'Maximum resident set size' "$work/$name.log" | awk '{print $NF}')
  echo "$name: $state; peak RSS $((rss / 1024)) MiB"
}
config one 2 false
config two 1 false
config zero 1 true
run one 2
run two 1 --nproc-per-node 2
run zero 1 --nproc-per-node 2
